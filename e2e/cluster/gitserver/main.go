// gitserver serves the bare repositories under -root over git's smart HTTP protocol, for
// clones and pushes from the e2e cluster's pods and from the host. It is a thin front for
// `git http-backend` (CGI) with pushes enabled and no authentication: it listens only on the
// harness's own network.
//
// A push to a repository that does not exist yet creates it (bare, default branch main), so a
// test can start with `git push http://10.211.0.2:8080/NAME.git main`.
package main

import (
	"flag"
	"log"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	root := flag.String("root", "/var/lib/ferry-e2e/git", "directory holding NAME.git repositories")
	flag.Parse()

	gitPath, err := exec.LookPath("git")
	if err != nil {
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
		clean := path.Clean("/" + r.URL.Path)
		repo, _, ok := strings.Cut(strings.TrimPrefix(clean, "/"), ".git/")
		if !ok || repo == "" || strings.Contains(repo, "..") {
			http.NotFound(w, r)
			return
		}
		dir := filepath.Join(*root, repo+".git")
		if r.URL.Query().Get("service") == "git-receive-pack" {
			if _, err := os.Stat(dir); os.IsNotExist(err) {
				out, err := exec.Command(gitPath, "init", "--quiet", "--bare",
					"--initial-branch=main", dir).CombinedOutput()
				if err != nil {
					log.Printf("init %s: %v: %s", dir, err, out)
					http.Error(w, "cannot create repository", http.StatusInternalServerError)
					return
				}
				log.Printf("created %s", dir)
			}
		}
		log.Printf("%s %s", r.Method, r.URL)
		backend.ServeHTTP(w, r)
	})
	log.Printf("serving %s on %s", *root, *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
