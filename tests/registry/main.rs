//! `ferry build publish` against a real registry (Debian's `docker-registry`, the CNCF
//! distribution) on loopback, started by each test with its own port and storage.
//!
//! The tests run the real binary, as the build pod does, and read what reached the registry
//! from the registry itself: its manifests and configs through Ferry's registry adapter, and
//! the requests it served from its access log (one line per request, written when the response
//! is complete), which is how "no layer was uploaded" is counted.
//!
//! Without `/usr/bin/docker-registry` the tests say so and pass, except under CI (`CI` set),
//! where they fail: `.ci/run` installs the package, so a skip there would hide a broken setup.
//!
//! `bench` holds `make bench-publish` (ignored: it prints figures, it does not judge them).

mod bench;
mod publish;
mod support;
