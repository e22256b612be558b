// Command deploytool takes the two deploy-time steps Terraform cannot take
// (docs/DEPLOY.md):
//
//	terraform -chdir=terraform output -json | go run ./scripts/deploytool check-config
//	terraform -chdir=terraform show -json tfplan | go run ./scripts/deploytool check-config
//	terraform -chdir=terraform output -json | go run ./scripts/deploytool release-rules
//
// check-config loads each function's configuration as the function will at
// start (lifecycle.LoadConfigFrom with functions.TargetNeeds), from the
// environment Terraform gives it (output function_environment) and the
// secret versions it pins, read with gcloud. With the secret versions added
// by hand, nothing else sees their values before the functions start: a
// 16-byte TOKEN_ENCRYPTION_KEY or a disabled latest version is found here,
// before the apply, instead of as 503s after it. It prints one line per
// function and never a secret value.
//
// release-rules moves the Firestore rules release to the ruleset Terraform
// created (output firestore_rules_release) in place, with the Firebase
// Rules API's UpdateRelease (or creates it if missing): the provider can
// only delete a release and create it again, which leaves the database
// without rules for that moment. It never deletes anything.
//
// Both read the JSON of `terraform output -json` or `terraform show -json
// PLAN` on stdin and call gcloud (-gcloud) for secret values and an access
// token. Exit status: 0 when done and every function starts, 1 otherwise,
// 2 on bad usage.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `usage: deploytool [-gcloud PATH] check-config | release-rules [-endpoint URL]  < terraform output -json (or show -json PLAN)`

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deploytool", flag.ContinueOnError)
	fs.SetOutput(stderr)
	gcloudPath := fs.String("gcloud", "gcloud", "the Google Cloud CLI to read secrets and an access token with")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
	g := gcloud{path: *gcloudPath}
	cmd, rest := fs.Arg(0), fs.Args()[1:]
	switch cmd {
	case "check-config":
		if len(rest) > 0 {
			fmt.Fprintln(stderr, usage)
			return exitUsage
		}
		outputs, err := terraformOutputs(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "deploytool: %v\n", err)
			return exitFailure
		}
		return checkConfig(ctx, outputs, g, stdout, stderr)
	case "release-rules":
		rfs := flag.NewFlagSet("release-rules", flag.ContinueOnError)
		rfs.SetOutput(stderr)
		endpoint := rfs.String("endpoint", "https://firebaserules.googleapis.com", "the Firebase Rules API")
		if err := rfs.Parse(rest); err != nil || rfs.NArg() > 0 {
			fmt.Fprintln(stderr, usage)
			return exitUsage
		}
		outputs, err := terraformOutputs(stdin)
		if err != nil {
			fmt.Fprintf(stderr, "deploytool: %v\n", err)
			return exitFailure
		}
		return releaseRules(ctx, outputs, g, strings.TrimSuffix(*endpoint, "/"), stdout, stderr)
	default:
		fmt.Fprintln(stderr, usage)
		return exitUsage
	}
}

// terraformOutputs returns the output values of `terraform output -json`
// ({"name": {"value": ...}}) or of `terraform show -json PLAN`
// ({"planned_values": {"outputs": {"name": {"value": ...}}}}), by name.
// An output whose value the plan does not know yet is left out.
func terraformOutputs(r io.Reader) (map[string]json.RawMessage, error) {
	var doc map[string]json.RawMessage
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, fmt.Errorf("reading Terraform's JSON on stdin: %w", err)
	}
	if planned, ok := doc["planned_values"]; ok {
		var p struct {
			Outputs map[string]json.RawMessage `json:"outputs"`
		}
		if err := json.Unmarshal(planned, &p); err != nil {
			return nil, fmt.Errorf("reading the plan's planned_values: %w", err)
		}
		doc = p.Outputs
	}
	out := make(map[string]json.RawMessage, len(doc))
	for name, raw := range doc {
		var o struct {
			Value json.RawMessage `json:"value"`
		}
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, fmt.Errorf("reading output %s: %w", name, err)
		}
		if len(o.Value) > 0 {
			out[name] = o.Value
		}
	}
	return out, nil
}

// output decodes one output into v; a missing one is an error naming it.
func output(outputs map[string]json.RawMessage, name string, v any) error {
	raw, ok := outputs[name]
	if !ok {
		return fmt.Errorf("no output %q in Terraform's JSON (unknown until applied, or an older configuration)", name)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("reading output %s: %w", name, err)
	}
	return nil
}

// gcloud runs the Google Cloud CLI.
type gcloud struct{ path string }

// run returns what the command wrote to stdout; on failure, the error
// carries the last line it wrote to stderr (gcloud's reason).
func (g gcloud) run(ctx context.Context, args ...string) ([]byte, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, g.path, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		reason := strings.TrimSpace(errOut.String())
		if i := strings.LastIndex(reason, "\n"); i >= 0 {
			reason = reason[i+1:]
		}
		if reason == "" {
			reason = err.Error()
		}
		return nil, errors.New(reason)
	}
	return out.Bytes(), nil
}
