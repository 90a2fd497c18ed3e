//! The `ferry` command line: the operator and its helper commands.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ferry::controller::{self, LeaseSettings, Settings};
use ferry::telemetry::{self, LogFormat};

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Delivers applications from a git commit to production"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Controller {
        /// Address of the HTTP endpoints: /healthz, /readyz and /metrics.
        #[arg(long, env = "FERRY_HTTP_ADDR", default_value = "0.0.0.0:8080")]
        http_addr: SocketAddr,
        /// Watch one namespace only instead of the whole cluster.
        #[arg(long, env = "FERRY_NAMESPACE")]
        namespace: Option<String>,
        /// Log format.
        #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Reconcile only while holding a Lease, so that several replicas can run.
        #[arg(long, env = "FERRY_LEADER_ELECT")]
        leader_elect: bool,
        /// Namespace of the Lease (default: the pod's namespace from POD_NAMESPACE).
        #[arg(long, env = "POD_NAMESPACE", default_value = "ferry-system")]
        leader_elect_namespace: String,
        /// Ferry's own ServiceAccount as `namespace:name`, named in the command that lets Ferry
        /// read a tenant namespace's Secrets.
        #[arg(
            long,
            env = "FERRY_SERVICE_ACCOUNT",
            default_value = "ferry-system:ferry"
        )]
        service_account: String,
        /// How long a Lease lasts without renewal before a standby takes over (3s to 1h). The
        /// leader stops reconciling a third of it before then if it cannot renew.
        #[arg(long, default_value = "15s", value_parser = parse_lease_duration)]
        leader_elect_lease_duration: std::time::Duration,
        /// Address of the push webhook endpoint, POST /webhooks/<namespace>/<application>.
        #[arg(long, env = "FERRY_WEBHOOK_ADDR", default_value = "0.0.0.0:9443")]
        webhook_addr: SocketAddr,
        /// Image of the fetch and publish steps of build pods (default: Ferry's own image,
        /// read from its pod).
        #[arg(long, env = "FERRY_BUILD_IMAGE")]
        build_image: Option<String>,
        /// Networks the controller never connects to when it follows a repository or registry
        /// URL, on top of link-local addresses (always refused): the cluster's own Service
        /// and pod ranges, for example `10.96.0.0/12,10.244.0.0/16`. Empty by default.
        #[arg(
            long,
            env = "FERRY_REFUSED_NETWORKS",
            value_delimiter = ',',
            value_parser = clap::value_parser!(ferry::adapters::address::Network)
        )]
        refused_networks: Vec<ferry::adapters::address::Network>,
        /// Serve only the namespaces of shard INDEX/COUNT (`ferry shard` names the shard of a
        /// namespace), with a Lease of its own; several controllers then split the cluster.
        #[arg(long, env = "FERRY_SHARD", default_value = "0/1")]
        shard: ferry::decide::shard::Shard,
    },
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD.
    Crds {
        /// Write `<plural>.ferry.dev.yaml` files into this directory instead of printing.
        #[arg(long)]
        out_dir: Option<std::path::PathBuf>,
        /// Print the API reference in Markdown instead.
        #[arg(long, conflicts_with = "out_dir")]
        reference: bool,
    },
    /// Print which shard serves each namespace when COUNT controllers split the cluster.
    Shard {
        /// How many shards (controllers started with --shard INDEX/COUNT).
        #[arg(long = "of", value_parser = clap::value_parser!(u32).range(1..))]
        count: u32,
        /// The namespaces.
        #[arg(required = true)]
        namespaces: Vec<String>,
    },
    /// The steps of a build pod.
    Build {
        #[command(subcommand)]
        step: BuildStep,
    },
}

#[derive(Subcommand)]
enum BuildStep {
    /// Check one commit out into a directory, and report the work items since a commit.
    Fetch {
        /// The repository's http(s) URL.
        #[arg(long)]
        url: String,
        /// The commit to check out, 40 hex digits.
        #[arg(long)]
        commit: String,
        /// An empty or missing directory that becomes the checkout.
        #[arg(long)]
        dest: std::path::PathBuf,
        /// A directory with `username` and `password` files (a mounted basic-auth Secret).
        #[arg(long)]
        credentials: Option<std::path::PathBuf>,
        /// Send the credentials over a plain http:// URL too (the source's `insecure`).
        #[arg(long)]
        insecure: bool,
        /// The previous Release's commit: the report lists the work items after it.
        #[arg(long)]
        since: Option<String>,
        /// Where to write the JSON report (commit, work items), e.g. /dev/termination-log.
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
    /// Publish the build's output directory (or OCI layout) as an image and report its digest.
    Publish(ferry::build::publish::Args),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Build {
            step: BuildStep::Publish(args),
        } => ferry::build::publish::main(args).await,
        Command::Shard { count, namespaces } => {
            for namespace in namespaces {
                let index = ferry::decide::shard::Shard::of(&namespace, count);
                println!("{namespace}\t{index}/{count}");
            }
            ExitCode::SUCCESS
        }
        Command::Crds { out_dir, reference } => match print_crds(out_dir.as_deref(), reference) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ferry: cannot write the CRDs: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Build {
            step:
                BuildStep::Fetch {
                    url,
                    commit,
                    dest,
                    credentials,
                    insecure,
                    since,
                    report,
                },
        } => {
            // gitoxide's blocking HTTP client must not run on the async runtime's threads.
            let fetched = tokio::task::spawn_blocking(move || {
                ferry::build::fetch::run(
                    &url,
                    &commit,
                    &dest,
                    (credentials.as_deref(), insecure),
                    since.as_deref(),
                    report.as_deref(),
                )
            })
            .await;
            match fetched {
                Ok(Ok(fetched)) => {
                    println!("checked out {}", fetched.commit);
                    ExitCode::SUCCESS
                }
                Ok(Err(error)) => {
                    eprintln!("ferry build fetch: {error}");
                    ExitCode::FAILURE
                }
                Err(error) => {
                    eprintln!("ferry build fetch: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Controller {
            http_addr,
            namespace,
            log_format,
            leader_elect,
            leader_elect_namespace,
            leader_elect_lease_duration,
            service_account,
            webhook_addr,
            build_image,
            refused_networks,
            shard,
        } => {
            telemetry::init_logging(log_format);
            ferry::adapters::address::configure(ferry::adapters::address::AddressPolicy {
                refused: refused_networks,
            });
            let settings = Settings {
                http_addr,
                namespace,
                leader_election: leader_elect.then(|| LeaseSettings {
                    namespace: leader_elect_namespace,
                    // Each shard leads its own share.
                    name: if shard.is_split() {
                        format!("ferry-controller-{}-of-{}", shard.index, shard.count)
                    } else {
                        "ferry-controller".to_owned()
                    },
                    identity: identity(),
                    duration: leader_elect_lease_duration,
                }),
                service_account,
                webhook_addr,
                build_image,
                shard,
            };
            match controller::run(settings).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(error = %error, "controller stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn print_crds(
    out_dir: Option<&std::path::Path>,
    reference: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    match out_dir {
        None if reference => print!("{}", ferry::api::reference::markdown()?),
        None => print!("{}", ferry::api::crds_yaml()?),
        Some(dir) => {
            for (file, yaml) in ferry::api::crd_files()? {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
    }
    Ok(())
}

/// This replica's name in the Lease: the pod name, else the host name and process id.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// A lease duration such as `15s`, `2m` or `1m30s`, from 3s to 1h (`decide::leadership`'s
/// bounds: renewals come every third of it; an hour is already longer than anyone wants the
/// controllers leaderless after a crash, and the cap keeps every sum of instants and
/// `leaseDurationSeconds`, an i32, far from overflowing). Parsed with jiff, which reports an
/// overflowing number as an error where Go-style parsers in our dependencies panic.
fn parse_lease_duration(text: &str) -> Result<std::time::Duration, String> {
    use ferry::decide::leadership::{MAX_LEASE_DURATION, MIN_LEASE_DURATION};
    let parsed: jiff::SignedDuration = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a duration such as 15s or 1m30s: {e}"))?;
    let duration = std::time::Duration::try_from(parsed)
        .map_err(|_| format!("{text:?} is negative: a lease lasts from 3s to 1h"))?;
    if duration < MIN_LEASE_DURATION {
        return Err(format!("{text:?} is too short: a lease lasts at least 3s"));
    }
    if duration > MAX_LEASE_DURATION {
        return Err(format!("{text:?} is too long: a lease lasts at most 1h"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_durations_are_bounded_and_never_overflow() {
        let seconds = |s: u64| Ok(std::time::Duration::from_secs(s));
        for (text, want) in [
            ("15s", seconds(15)),
            ("3s", seconds(3)),
            ("1m30s", seconds(90)),
            ("1h", seconds(3600)),
            ("3600s", seconds(3600)),
            ("2500ms", Err("too short")),
            ("2.999s", Err("too short")),
            ("0s", Err("too short")),
            ("1h1s", Err("too long")),
            ("3601s", Err("too long")),
            ("99999999999999999999h", Err("not a duration")),
            ("9223372036854775807s", Err("too long")),
            ("-5s", Err("negative")),
            ("15", Err("not a duration")),
            ("", Err("not a duration")),
            ("soon", Err("not a duration")),
        ] {
            let got = parse_lease_duration(text);
            match (&got, want) {
                (Ok(got), Ok(want)) => assert_eq!(*got, want, "{text}"),
                (Err(message), Err(part)) => {
                    assert!(message.contains(part), "{text}: {message}")
                }
                _ => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }
}
