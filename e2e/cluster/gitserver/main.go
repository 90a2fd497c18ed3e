// gitserver serves the bare repositories under -root over git's smart HTTP protocol, for
// clones and pushes from the e2e cluster's pods and from the host. It is a thin front for
// `git http-backend` (CGI) with pushes enabled and no authentication: it listens only on the
// harness's own network.
//
// A push to a repository that does not exist yet creates it (bare, default branch main), so a
// test can start with `git push http://10.211.0.2:8080/NAME.git main`.
//
// With -basic-auth USER:PASSWORD every request but /healthz must carry those credentials
// (HTTP basic authentication), for tests of private repositories.
//
// Webhooks: when a repository's git config has ferry.webhook.url, every push that changes a ref
// is announced there as a GitHub-style push event (X-GitHub-Event: push), signed with
// X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(ferry.webhook.secret, body)) when a secret
// is set. See e2e/cluster/git-webhook.sh.
//
// What it accepts, and why: anything in the cluster can talk to it, so it refuses what git's
// smart HTTP protocol never sends (4xx), bounds how long a client may hold a connection and how
// much it may send, and logs requests by repository and status only: a webhook URL can carry a
// token and the secret signs deliveries, so neither is ever logged.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

const (
	// A push carries a pack of every new object; the e2e repositories are a few KiB, real
	// applications' sources a few MiB.
	maxPushBytes = 256 << 20
	// A fetch sends only the object ids it wants and has.
	maxFetchBytes = 16 << 20
	maxPathBytes  = 512
	// git's own commands on a local bare repository; seconds in practice.
	gitTimeout = 30 * time.Second
)

// A repository name: one to three path segments of letters, digits, '.', '_' and '-', each
// starting with a letter or digit (so no "..", no hidden directories, no absolute paths).
var repoName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(/[A-Za-z0-9][A-Za-z0-9._-]{0,63}){0,2}$`)

// What git's HTTP transports ask for below NAME.git/: the smart protocol's two services and its
// ref advertisement, and the dumb protocol's files.
var dumbFile = regexp.MustCompile(`^(HEAD|objects/info/(alternates|http-alternates|packs)|objects/[0-9a-f]{2}/[0-9a-f]{38,62}|objects/pack/pack-[0-9a-f]{40,64}\.(pack|idx))$`)

var gitPath string

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	root := flag.String("root", "/var/lib/ferry-e2e/git", "directory holding NAME.git repositories")
	base := flag.String("url", "", "base URL clients use (for clone_url in webhooks); default http://LISTEN")
	basicAuth := flag.String("basic-auth", "", "USER:PASSWORD every request must present (default: none)")
	flag.Parse()
	if *base == "" {
		*base = "http://" + *listen
	}

	var err error
	if gitPath, err = exec.LookPath("git"); err != nil {
		log.Fatal(err)
	}
	if err := os.MkdirAll(*root, 0o755); err != nil {
		log.Fatal(err)
	}
	s := &server{
		root:      *root,
		base:      *base,
		basicAuth: *basicAuth,
		backend: &cgi.Handler{
			Path: gitPath,
			Args: []string{"http-backend"},
			Env: []string{
				"GIT_PROJECT_ROOT=" + *root,
				"GIT_HTTP_EXPORT_ALL=1",
				// http-backend refuses receive-pack to anonymous users unless this is set.
				"GIT_CONFIG_COUNT=1",
				"GIT_CONFIG_KEY_0=http.receivepack",
				"GIT_CONFIG_VALUE_0=true",
			},
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.Handle("/", s)
	srv := &http.Server{
		Addr:    *listen,
		Handler: mux,
		// A client that connects and sends nothing, or trickles, gives its connection up.
		ReadHeaderTimeout: 10 * time.Second,
		// Whole requests and responses, generous for the largest push or clone a test makes.
		ReadTimeout:    5 * time.Minute,
		WriteTimeout:   10 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 64 << 10,
	}
	log.Printf("serving %s on %s", *root, *listen)
	log.Fatal(srv.ListenAndServe())
}

type server struct {
	root, base, basicAuth string
	backend               *cgi.Handler
}

// statusWriter remembers the status for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	start := time.Now()
	repo, status := s.serve(w, r)
	if w.status == 0 {
		w.status = status
	}
	if repo == "" {
		repo = "-"
	}
	log.Printf("%s %s %d %s", r.Method, repo, w.status, time.Since(start).Round(time.Millisecond))
}

// serve answers one request and returns the repository it was for ("" if none was valid).
func (s *server) serve(w http.ResponseWriter, r *http.Request) (string, int) {
	refuse := func(repo string, code int, msg string) (string, int) {
		http.Error(w, msg, code)
		return repo, code
	}
	if s.basicAuth != "" {
		user, password, ok := r.BasicAuth()
		wantUser, wantPassword, _ := strings.Cut(s.basicAuth, ":")
		if !ok || subtle.ConstantTimeCompare([]byte(user+":"+password), []byte(wantUser+":"+wantPassword)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			return refuse("", http.StatusUnauthorized, "authentication required")
		}
	}
	if len(r.URL.Path) > maxPathBytes {
		return refuse("", http.StatusRequestURITooLong, "path too long")
	}
	repo, rest, ok := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), ".git/")
	if !ok || !repoName.MatchString(repo) {
		return refuse("", http.StatusBadRequest,
			"expected /NAME.git/..., NAME made of letters, digits, '.', '_', '-' (up to three segments)")
	}
	service := r.URL.Query().Get("service")
	var limit int64
	switch {
	case rest == "info/refs" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		if service != "" && service != "git-upload-pack" && service != "git-receive-pack" {
			return refuse(repo, http.StatusBadRequest, "unknown service")
		}
	case rest == "git-upload-pack" || rest == "git-receive-pack":
		if r.Method != http.MethodPost {
			return refuse(repo, http.StatusMethodNotAllowed, "POST only")
		}
		limit = maxFetchBytes
		if rest == "git-receive-pack" {
			limit = maxPushBytes
		}
	case dumbFile.MatchString(rest):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return refuse(repo, http.StatusMethodNotAllowed, "GET only")
		}
	default:
		return refuse(repo, http.StatusNotFound, "not a git HTTP endpoint")
	}
	if r.ContentLength > limit {
		return refuse(repo, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body over %d bytes", limit))
	}
	if r.ContentLength < 0 {
		// A chunked body (git sends one for packs over its 1 MiB http.postBuffer): CGI needs
		// the length up front, so spool it, refusing it once it passes the limit.
		spooled, n, err := spool(http.MaxBytesReader(w, r.Body, limit))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				return refuse(repo, http.StatusRequestEntityTooLarge,
					fmt.Sprintf("request body over %d bytes", limit))
			}
			return refuse(repo, http.StatusBadRequest, "cannot read the request body")
		}
		defer spooled.Close()
		r.Body, r.ContentLength, r.TransferEncoding = spooled, n, nil
	} else {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
	}

	dir := filepath.Join(s.root, repo+".git")
	if rest == "info/refs" && service == "git-receive-pack" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if out, err := git(r.Context(), "", "init", "--quiet", "--bare", "--initial-branch=main", dir); err != nil {
				log.Printf("init %s: %v: %s", repo, err, out)
				return refuse(repo, http.StatusInternalServerError, "cannot create repository")
			}
			log.Printf("created %s", repo)
		}
	}
	if rest != "git-receive-pack" {
		s.backend.ServeHTTP(w, r)
		return repo, http.StatusOK
	}
	before := refs(r.Context(), dir)
	s.backend.ServeHTTP(w, r)
	// The push is over; the announcement must not die with the request's context.
	after := refs(context.Background(), dir)
	go announce(dir, repo, s.base+"/"+repo+".git", before, after)
	return repo, http.StatusOK
}

// spool copies body to an unlinked temporary file and returns it rewound, with its length.
func spool(body io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "gitserver-body-")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name())
	n, err := io.Copy(f, body)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

func git(ctx context.Context, dir string, args ...string) ([]byte, error) {
	if dir != "" {
		args = append([]string{"--git-dir", dir}, args...)
	}
	ctx, cancel := context.WithTimeout(ctx, gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gitPath, args...)
	// Not the server's own working directory: git refuses to run in one that was deleted (a
	// checkout the server was started from, removed while it runs), and every webhook would
	// silently go unsent.
	cmd.Dir = "/"
	return cmd.Output()
}

// refs maps each ref of the repository at dir to the object it names.
func refs(ctx context.Context, dir string) map[string]string {
	out, _ := git(ctx, dir, "for-each-ref", "--format=%(objectname) %(refname)")
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if id, ref, ok := strings.Cut(line, " "); ok {
			m[ref] = id
		}
	}
	return m
}

const zero = "0000000000000000000000000000000000000000"

type commit struct {
	ID      string `json:"id"`
	Message string `json:"message"`
}

type pushEvent struct {
	Ref        string   `json:"ref"`
	Before     string   `json:"before"`
	After      string   `json:"after"`
	Created    bool     `json:"created"`
	Deleted    bool     `json:"deleted"`
	Commits    []commit `json:"commits"`
	HeadCommit *commit  `json:"head_commit"`
	Repository struct {
		Name     string `json:"name"`
		FullName string `json:"full_name"`
		CloneURL string `json:"clone_url"`
	} `json:"repository"`
}

// announce sends one push event per changed ref to the repository's webhook, if it has one.
func announce(dir, name, cloneURL string, before, after map[string]string) {
	ctx := context.Background()
	raw, _ := git(ctx, dir, "config", "--get", "ferry.webhook.url")
	target := strings.TrimSpace(string(raw))
	if target == "" {
		return
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		log.Printf("webhook %s: ferry.webhook.url is not an http(s) URL; nothing sent", name)
		return
	}
	secret, _ := git(ctx, dir, "config", "--get", "ferry.webhook.secret")
	changed := map[string]bool{}
	for ref := range before {
		changed[ref] = true
	}
	for ref := range after {
		changed[ref] = true
	}
	for ref := range changed {
		old, cur := before[ref], after[ref]
		if old == cur {
			continue
		}
		ev := pushEvent{Ref: ref, Before: old, After: cur, Created: old == "", Deleted: cur == ""}
		if ev.Created {
			ev.Before = zero
		}
		if ev.Deleted {
			ev.After = zero
		}
		ev.Repository.Name, ev.Repository.FullName, ev.Repository.CloneURL = name, name, cloneURL
		ev.Commits = []commit{}
		if !ev.Deleted {
			span := cur
			if !ev.Created {
				span = old + ".." + cur
			}
			// Newest first from git log; GitHub lists oldest first. At most 20, as a summary.
			out, _ := git(ctx, dir, "log", "--max-count=20", "--format=%H%x00%B%x1e", span)
			for _, rec := range strings.Split(string(out), "\x1e") {
				id, msg, ok := strings.Cut(strings.TrimLeft(rec, "\n"), "\x00")
				if ok {
					ev.Commits = append([]commit{{ID: id, Message: strings.TrimSpace(msg)}}, ev.Commits...)
				}
			}
			if n := len(ev.Commits); n > 0 {
				ev.HeadCommit = &ev.Commits[n-1]
			}
		}
		send(name, target, strings.TrimSpace(string(secret)), ev)
	}
}

// The webhook client: bounded in every phase, never through a proxy (the receivers are in the
// cluster), and not following redirects (a receiver cannot send the signed body elsewhere).
var hookClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// send delivers one event, retrying network errors and 5xx answers. It logs the repository, the
// ref and the outcome, never the URL or the secret.
func send(repo, target, secret string, ev pushEvent) {
	body, _ := json.Marshal(ev)
	id := make([]byte, 16)
	rand.Read(id)
	for attempt := 1; attempt <= 5; attempt++ {
		req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
		if err != nil {
			log.Printf("webhook %s %s: cannot build the request; nothing sent", repo, ev.Ref)
			return
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", hex.EncodeToString(id))
		if secret != "" {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write(body)
			req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		}
		resp, err := hookClient.Do(req)
		if err == nil {
			io.CopyN(io.Discard, resp.Body, 64<<10)
			resp.Body.Close()
			log.Printf("webhook %s %s attempt %d: %s", repo, ev.Ref, attempt, resp.Status)
			if resp.StatusCode < 500 {
				return
			}
		} else {
			log.Printf("webhook %s %s attempt %d: %s", repo, ev.Ref, attempt, failure(err))
		}
		time.Sleep(time.Duration(attempt) * time.Second)
	}
}

// failure names what went wrong with a delivery without the error's text, which quotes the URL.
func failure(err error) string {
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		return "timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the receiver"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	default:
		return "request failed"
	}
}
