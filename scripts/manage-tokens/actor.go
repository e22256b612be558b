package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
)

// resolveActor is who the run and audit records name (DESIGN §9): the
// --actor flag, else the Google account of the credentials the CLI would
// use, else the local user as cli:USER ($USER, else the process's account).
// The account is read from files only, never asked of a server: a service
// account key's client_email, an impersonated account's email, or for user
// credentials the account of gcloud's active configuration.
func resolveActor(flag string, getenv func(string) (string, bool)) string {
	if a := strings.TrimSpace(flag); a != "" {
		return a
	}
	if a := googleAccount(getenv); a != "" {
		return a
	}
	for _, k := range []string{"USER", "USERNAME"} {
		if v, ok := getenv(k); ok && strings.TrimSpace(v) != "" {
			return "cli:" + strings.TrimSpace(v)
		}
	}
	// No USER (a container, cron): the account the process runs as.
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli"
}

// gcloudDir is gcloud's configuration directory: $CLOUDSDK_CONFIG, else
// ~/.config/gcloud.
func gcloudDir(getenv func(string) (string, bool)) string {
	if d, _ := getenv("CLOUDSDK_CONFIG"); d != "" {
		return d
	}
	if home, _ := getenv("HOME"); home != "" {
		return filepath.Join(home, ".config", "gcloud")
	}
	return ""
}

// googleAccount is the account of the Application Default Credentials:
// GOOGLE_APPLICATION_CREDENTIALS, else gcloud's well-known ADC file; for
// user credentials (or none), gcloud's configured account.
func googleAccount(getenv func(string) (string, bool)) string {
	path, _ := getenv("GOOGLE_APPLICATION_CREDENTIALS")
	if path == "" {
		if dir := gcloudDir(getenv); dir != "" {
			path = filepath.Join(dir, "application_default_credentials.json")
		}
	}
	if path != "" {
		if a := credentialsAccount(path); a != "" {
			return a
		}
	}
	return gcloudAccount(getenv)
}

// impersonationURL finds the account in an impersonated credential's
// .../serviceAccounts/EMAIL:generateAccessToken.
var impersonationURL = regexp.MustCompile(`/serviceAccounts/([^/:]+@[^/:]+):generateAccessToken`)

// credentialsAccount is the account a credentials file names, "" when it
// names none (user and external credentials) or cannot be read.
func credentialsAccount(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var cred struct {
		Type             string `json:"type"`
		ClientEmail      string `json:"client_email"`
		ImpersonationURL string `json:"service_account_impersonation_url"`
	}
	if json.Unmarshal(data, &cred) != nil {
		return ""
	}
	switch cred.Type {
	case "service_account":
		return cred.ClientEmail
	case "impersonated_service_account", "external_account":
		if m := impersonationURL.FindStringSubmatch(cred.ImpersonationURL); m != nil {
			return m[1]
		}
	}
	return ""
}

// gcloudAccount is gcloud's account: $CLOUDSDK_CORE_ACCOUNT, else the
// [core] account of the active configuration ($CLOUDSDK_ACTIVE_CONFIG_NAME,
// else the active_config file, else "default").
func gcloudAccount(getenv func(string) (string, bool)) string {
	if a, _ := getenv("CLOUDSDK_CORE_ACCOUNT"); strings.TrimSpace(a) != "" {
		return strings.TrimSpace(a)
	}
	dir := gcloudDir(getenv)
	if dir == "" {
		return ""
	}
	name, _ := getenv("CLOUDSDK_ACTIVE_CONFIG_NAME")
	if name == "" {
		if b, err := os.ReadFile(filepath.Join(dir, "active_config")); err == nil {
			name = strings.TrimSpace(string(b))
		}
	}
	if name == "" {
		name = "default"
	}
	f, err := os.Open(filepath.Join(dir, "configurations", "config_"+name))
	if err != nil {
		return ""
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.TrimSpace(line[1 : len(line)-1])
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && section == "core" && strings.TrimSpace(k) == "account" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
