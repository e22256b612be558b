package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --profile NAME reads ~/.config/manage-tokens/NAME.env (XDG_CONFIG_HOME
// first), whose settings win over the environment's; MANAGE_TOKENS_PROFILE
// names one too. Not parallel: a profile sets the process's
// FIRESTORE_EMULATOR_HOST, which the client library reads.
func TestProfile(t *testing.T) {
	emulatorHost := os.Getenv("FIRESTORE_EMULATOR_HOST")
	t.Setenv("FIRESTORE_EMULATOR_HOST", emulatorHost) // restored after
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
	env := newCLIEnv(t, true)
	config := t.TempDir()
	profile := filepath.Join(config, "manage-tokens", "local.env")
	if err := os.MkdirAll(filepath.Dir(profile), 0o700); err != nil {
		t.Fatal(err)
	}
	content := "# scripts/dev.sh\nGOOGLE_CLOUD_PROJECT=" + env.Project + "\nFIRESTORE_EMULATOR_HOST=" + emulatorHost + "\n"
	if err := os.WriteFile(profile, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	// The shell points elsewhere: the profile wins.
	vars := map[string]string{"XDG_CONFIG_HOME": config, "GOOGLE_CLOUD_PROJECT": "production-project"}
	getenv := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }

	for _, args := range [][]string{{"analytics", "--profile", "local"}, {"analytics", "--profile", profile}} {
		res := runCLI(t, getenv, args...)
		res.mustSucceed(t)
		if !strings.Contains(res.stdout, "Total tokens: 15") {
			t.Errorf("%v: stdout:\n%s", args, res.stdout)
		}
	}
	// The profile did not name a storage emulator: the shell's is dropped.
	if v, ok := os.LookupEnv("STORAGE_EMULATOR_HOST"); ok {
		t.Errorf("STORAGE_EMULATOR_HOST = %q after a profile without it, want it unset", v)
	}
	vars["MANAGE_TOKENS_PROFILE"] = "local"
	if res := runCLI(t, getenv, "analytics"); res.code != exitOK || !strings.Contains(res.stdout, "Total tokens: 15") {
		t.Errorf("MANAGE_TOKENS_PROFILE=local: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}

	vars["XDG_CONFIG_HOME"] = t.TempDir() // no profile there
	res := runCLI(t, getenv, "analytics", "--profile", "local")
	if res.code != exitFailure || !strings.Contains(res.stderr, "scripts/dev.sh writes it") {
		t.Errorf("missing local profile: exit %d, stderr %q", res.code, res.stderr)
	}
}
