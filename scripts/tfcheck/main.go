// Command tfcheck keeps the files of terraform/ that are written from
// something else: the module README's tables of variables and outputs
// (from variables.tf and outputs.tf) and the module's list of IANA time
// zones (from Go's tz database).
//
// Its tests are the checks `terraform validate` and `terraform test` cannot
// make, because they compare Terraform with the Go code or with files
// Terraform does not read: the secrets each function is given against
// functions.TargetNeeds, the root configuration against the module, the
// runtime against go.mod, the Firestore security rules on the emulator, the README tables,
// the time zone list and Cloud Build's apply guard. They need no provider,
// so scripts/tf-checks.sh runs them everywhere; terraform validate and
// terraform test (the real hashicorp/google provider) check the rest.
//
// Usage:
//
//	go run ./scripts/tfcheck -write-readme
//	go run ./scripts/tfcheck -write-time-zones
//
// Exit status: 0 when done, 1 when writing failed, 2 on bad usage.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("tfcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	readme := fs.Bool("write-readme", false, "rewrite the variables and outputs tables of "+ModuleReadme)
	zones := fs.Bool("write-time-zones", false, "rewrite "+TimeZonesFile+" from Go's tz database")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || (!*readme && !*zones) {
		fmt.Fprintln(stderr, "usage: tfcheck -write-readme | -write-time-zones")
		return 2
	}
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(stderr, "tfcheck: %v\n", err)
		return 1
	}
	if *readme {
		if err := WriteModuleReadme(root); err != nil {
			fmt.Fprintf(stderr, "tfcheck: %v\n", err)
			return 1
		}
	}
	if *zones {
		if err := WriteTimeZones(filepath.Join(root, TimeZonesFile)); err != nil {
			fmt.Fprintf(stderr, "tfcheck: %v\n", err)
			return 1
		}
	}
	return 0
}

// repoRoot returns the nearest directory at or above the working directory
// that holds both a go.mod and terraform/: the repository root (tfcheck is a
// module of its own, so its own go.mod is not the answer).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, errMod := os.Stat(filepath.Join(dir, "go.mod"))
		_, errTF := os.Stat(filepath.Join(dir, "terraform"))
		if errMod == nil && errTF == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (go.mod beside terraform/) at or above the working directory")
		}
		dir = parent
	}
}
