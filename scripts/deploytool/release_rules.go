package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// rulesRelease is the module's output firestore_rules_release.
type rulesRelease struct {
	Release string `json:"release"` // projects/P/releases/cloud.firestore[/DATABASE]
	Ruleset string `json:"ruleset"` // projects/P/rulesets/ID
}

// release is the Firebase Rules API's Release, the fields used here.
type release struct {
	Name        string `json:"name"`
	RulesetName string `json:"rulesetName"`
}

// releaseRules points the release at the ruleset: UpdateRelease when it
// exists, CreateRelease when it does not, nothing when it already does.
func releaseRules(ctx context.Context, outputs map[string]json.RawMessage, g gcloud, endpoint string, stdout, stderr io.Writer) int {
	var want *rulesRelease
	if err := output(outputs, "firestore_rules_release", &want); err != nil {
		fmt.Fprintf(stderr, "deploytool: %v\n", err)
		return exitFailure
	}
	if want == nil {
		fmt.Fprintln(stdout, "Firestore rules: not released by this configuration (manage_firestore_rules = false)")
		return exitOK
	}
	parts := strings.SplitN(want.Release, "/", 4)
	if len(parts) != 4 || parts[0] != "projects" || parts[2] != "releases" || !strings.HasPrefix(want.Ruleset, "projects/"+parts[1]+"/rulesets/") {
		fmt.Fprintf(stderr, "deploytool: output firestore_rules_release is not a release and a ruleset of one project: %+v\n", *want)
		return exitFailure
	}
	project := parts[1]
	token, err := g.run(ctx, "auth", "print-access-token")
	if err != nil {
		fmt.Fprintf(stderr, "deploytool: no access token from gcloud: %v\n", err)
		return exitFailure
	}
	api := rulesAPI{endpoint: endpoint, project: project, token: strings.TrimSpace(string(token)),
		client: &http.Client{Timeout: time.Minute}}

	var current release
	status, err := api.call(ctx, http.MethodGet, "/v1/"+want.Release, nil, &current)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "deploytool: reading release %s: %v\n", want.Release, err)
		return exitFailure
	case status == http.StatusNotFound:
		var created release
		if _, err := api.call(ctx, http.MethodPost, "/v1/projects/"+project+"/releases",
			release{Name: want.Release, RulesetName: want.Ruleset}, &created); err != nil {
			fmt.Fprintf(stderr, "deploytool: creating release %s: %v\n", want.Release, err)
			return exitFailure
		}
		fmt.Fprintf(stdout, "Firestore rules: %s created, releasing %s\n", want.Release, created.RulesetName)
	case current.RulesetName == want.Ruleset:
		fmt.Fprintf(stdout, "Firestore rules: %s already releases %s\n", want.Release, want.Ruleset)
	default:
		var updated release
		body := map[string]release{"release": {Name: want.Release, RulesetName: want.Ruleset}}
		if _, err := api.call(ctx, http.MethodPatch, "/v1/"+want.Release, body, &updated); err != nil {
			fmt.Fprintf(stderr, "deploytool: moving release %s to %s: %v\n", want.Release, want.Ruleset, err)
			return exitFailure
		}
		if updated.RulesetName != want.Ruleset {
			fmt.Fprintf(stderr, "deploytool: release %s answered ruleset %s after the update, want %s\n", want.Release, updated.RulesetName, want.Ruleset)
			return exitFailure
		}
		fmt.Fprintf(stdout, "Firestore rules: %s moved from %s to %s\n", want.Release, current.RulesetName, want.Ruleset)
	}
	return exitOK
}

// rulesAPI calls the Firebase Rules API as the gcloud account, billing the
// project's quota: the API refuses a person's credentials that name none.
type rulesAPI struct {
	endpoint, project, token string
	client                   *http.Client
}

// call sends body (if any) as JSON and decodes a 2xx answer into out. A 404
// is returned as a status, not an error; other failures are errors with the
// API's message.
func (a rulesAPI) call(ctx context.Context, method, path string, body, out any) (int, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.endpoint+path, r)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("X-Goog-User-Project", a.project)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode == http.StatusNotFound && method == http.MethodGet {
		return resp.StatusCode, nil
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error.Message != "" {
			return resp.StatusCode, fmt.Errorf("HTTP %d: %s", resp.StatusCode, e.Error.Message)
		}
		return resp.StatusCode, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, fmt.Errorf("reading the answer: %w", err)
		}
	}
	return resp.StatusCode, nil
}
