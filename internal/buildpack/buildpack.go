// Package buildpack builds the deployed functions the way Google's Go
// buildpack builds a Cloud Function from the source zip: the module as
// scripts/package-source.sh zips it, a generated main in
// functions.local/app that imports the module root package (whose init
// registers every target) and calls funcframework.Start, `go mod tidy`,
// then `go build`. One process serves one function, chosen by
// FUNCTION_TARGET, at "/". Tests and the benchmark run the functions this
// way, not only through scripts/serve.
package buildpack

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// modulePath is the module root package the generated main imports.
const modulePath = "github.com/finwell/plaid-token-lifecycle"

// mainSource is the main the buildpack generates for a function package
// that registers its targets declaratively (it imports
// functions-framework-go/functions): a blank import and funcframework.Start.
const mainSource = `// Code generated as Google's Go buildpack generates a function's main. DO NOT EDIT.
package main

import (
	"log"
	"net/http"
	"os"

	_ "` + modulePath + `"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"
)

func main() {
	http.HandleFunc("/robots.txt", http.NotFound)
	http.HandleFunc("/favicon.ico", http.NotFound)

	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	if err := funcframework.Start(port); err != nil {
		log.Fatalf("Function failed to start: %v\n", err)
	}
}
`

// Build packages the module at moduleRoot into the source zip, unpacks it
// into a work directory, adds the generated main, and builds it to out.
// `go mod tidy` needs the Go module proxy or the module cache, as the
// buildpack does.
func Build(ctx context.Context, moduleRoot, out string) error {
	work, err := os.MkdirTemp("", "buildpack-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	zipPath := filepath.Join(work, "source.zip")
	if err := run(ctx, moduleRoot, nil, "bash", "scripts/package-source.sh", zipPath); err != nil {
		return err
	}
	src := filepath.Join(work, "src")
	if err := unzip(zipPath, src); err != nil {
		return fmt.Errorf("unpacking the source zip: %w", err)
	}
	app := filepath.Join(src, "functions.local", "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(app, "main.go"), []byte(mainSource), 0o644); err != nil {
		return err
	}
	goEnv := []string{"GOFLAGS=-mod=mod"}
	if err := run(ctx, src, goEnv, "go", "mod", "tidy"); err != nil {
		return err
	}
	return run(ctx, src, goEnv, "go", "build", "-o", out, "./functions.local/app")
}

func run(ctx context.Context, dir string, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return nil
}

func unzip(path, dir string) error {
	r, err := zip.OpenReader(path)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, f := range r.File {
		dst := filepath.Join(dir, filepath.FromSlash(f.Name))
		if !strings.HasPrefix(dst, filepath.Clean(dir)+string(os.PathSeparator)) {
			return fmt.Errorf("zip entry %q escapes the directory", f.Name)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		rc, err := f.Open()
		if err != nil {
			return err
		}
		w, err := os.Create(dst)
		if err == nil {
			_, err = io.Copy(w, rc)
			if cerr := w.Close(); err == nil {
				err = cerr
			}
		}
		rc.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// ModuleRoot returns the directory of the module's go.mod, from the
// working directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.HasPrefix(string(b), "module "+modulePath+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory", modulePath)
		}
		dir = parent
	}
}
