package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/finwell/plaid-token-lifecycle/functions"
	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

// functionEnvironment is the module's output function_environment.
type functionEnvironment struct {
	Project   string `json:"project"`
	Functions map[string]struct {
		Env     map[string]string       `json:"env"`
		Secrets map[string]secretPinned `json:"secrets"`
	} `json:"functions"`
}

// secretPinned is a secret environment variable: the secret and the version
// the function is given ("" until a plan knows it: the latest).
type secretPinned struct {
	Secret  string `json:"secret"`
	Version string `json:"version"`
}

func (s secretPinned) version() string {
	if s.Version == "" {
		return "latest"
	}
	return s.Version
}

// checkConfig loads every function's configuration from what Terraform
// gives it, as lifecycle.LoadConfigFrom does at the function's start.
func checkConfig(ctx context.Context, outputs map[string]json.RawMessage, g gcloud, stdout, stderr io.Writer) int {
	var fe functionEnvironment
	if err := output(outputs, "function_environment", &fe); err != nil {
		fmt.Fprintf(stderr, "deploytool: %v\n", err)
		return exitFailure
	}
	if fe.Project == "" || len(fe.Functions) == 0 {
		fmt.Fprintln(stderr, "deploytool: output function_environment names no project or no function")
		return exitFailure
	}

	// Each secret version is read once, whatever number of functions it
	// goes to; a failed read is reported for every function that needs it.
	type read struct {
		value string
		err   error
	}
	values := map[secretPinned]read{}
	value := func(s secretPinned) (string, error) {
		if r, ok := values[s]; ok {
			return r.value, r.err
		}
		out, err := g.run(ctx, "secrets", "versions", "access", s.version(), "--secret="+s.Secret, "--project="+fe.Project)
		if err != nil {
			err = fmt.Errorf("secret %s version %s cannot be read: %v", s.Secret, s.version(), err)
		}
		values[s] = read{string(out), err}
		return string(out), err
	}

	failed := 0
	names := make([]string, 0, len(fe.Functions))
	for name := range fe.Functions {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		f := fe.Functions[name]
		needs, known := functions.TargetNeeds[name]
		if !known {
			failed++
			fmt.Fprintf(stdout, "%s: FAILS: not a target of functions.TargetNeeds (function.go registers no such function?)\n", name)
			continue
		}
		env := map[string]string{}
		for k, v := range f.Env {
			env[k] = v
		}
		var problems []string
		for key, s := range f.Secrets {
			v, err := value(s)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", key, err))
				continue
			}
			env[key] = v
		}
		// With a secret unreadable, the configuration would only repeat that
		// it is missing.
		if len(problems) == 0 {
			lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			if _, err := lifecycle.LoadConfigFrom(lookup, needs); err != nil {
				problems = append(problems, strings.TrimPrefix(strings.ReplaceAll(err.Error(), "\n", "; "), "invalid configuration:; "))
			}
		}
		if len(problems) > 0 {
			failed++
			slices.Sort(problems)
			fmt.Fprintf(stdout, "%s: FAILS: %s\n", name, strings.Join(problems, "; "))
			continue
		}
		fmt.Fprintf(stdout, "%s: ok\n", name)
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "deploytool: %d of %d functions would refuse to start: fix the secrets above (docs/DEPLOY.md, section 4) before applying\n", failed, len(names))
		return exitFailure
	}
	return exitOK
}
