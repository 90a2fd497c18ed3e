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
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"flag"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"time"
)

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
	backend := &cgi.Handler{
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
	}

	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if *basicAuth != "" {
			user, password, ok := r.BasicAuth()
			wantUser, wantPassword, _ := strings.Cut(*basicAuth, ":")
			if !ok || subtle.ConstantTimeCompare([]byte(user+":"+password), []byte(wantUser+":"+wantPassword)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		clean := path.Clean("/" + r.URL.Path)
		repo, rest, ok := strings.Cut(strings.TrimPrefix(clean, "/"), ".git/")
		if !ok || repo == "" || strings.Contains(repo, "..") {
			http.NotFound(w, r)
			return
		}
		dir := filepath.Join(*root, repo+".git")
		if r.URL.Query().Get("service") == "git-receive-pack" {
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				out, err := git("", "init", "--quiet", "--bare", "--initial-branch=main", dir)
				if err != nil {
					log.Printf("init %s: %v: %s", dir, err, out)
					http.Error(w, "cannot create repository", http.StatusInternalServerError)
					return
				}
				log.Printf("created %s", dir)
			}
		}
		log.Printf("%s %s", r.Method, r.URL)
		if r.Method != http.MethodPost || rest != "git-receive-pack" {
			backend.ServeHTTP(w, r)
			return
		}
		before := refs(dir)
		backend.ServeHTTP(w, r)
		after := refs(dir)
		go announce(dir, repo, *base+"/"+repo+".git", before, after)
	})
	log.Printf("serving %s on %s", *root, *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}

func git(dir string, args ...string) ([]byte, error) {
	if dir != "" {
		args = append([]string{"--git-dir", dir}, args...)
	}
	return exec.Command(gitPath, args...).Output()
}

// refs maps each ref of the repository at dir to the object it names.
func refs(dir string) map[string]string {
	out, _ := git(dir, "for-each-ref", "--format=%(objectname) %(refname)")
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
	url, _ := git(dir, "config", "--get", "ferry.webhook.url")
	if len(bytes.TrimSpace(url)) == 0 {
		return
	}
	secret, _ := git(dir, "config", "--get", "ferry.webhook.secret")
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
			out, _ := git(dir, "log", "--max-count=20", "--format=%H%x00%B%x1e", span)
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
		send(strings.TrimSpace(string(url)), strings.TrimSpace(string(secret)), ev)
	}
}

func send(url, secret string, ev pushEvent) {
	body, _ := json.Marshal(ev)
	id := make([]byte, 16)
	rand.Read(id)
	for attempt := 1; attempt <= 5; attempt++ {
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", hex.EncodeToString(id))
		if secret != "" {
			mac := hmac.New(sha256.New, []byte(secret))
			mac.Write(body)
			req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err == nil {
			resp.Body.Close()
			log.Printf("webhook %s %s -> %s", ev.Ref, url, resp.Status)
			if resp.StatusCode < 500 {
				return
			}
		} else {
			log.Printf("webhook %s %s: %v", ev.Ref, url, err)
		}
		time.Sleep(time.Duration(attempt) * time.Second)
	}
}
