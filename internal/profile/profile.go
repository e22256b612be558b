// Package profile reads settings profiles: files of KEY=VALUE lines (the
// environment variables of DESIGN §8) that the operators' tools load, so
// that pointing them at a system is one flag, not a copied line of
// exports. scripts/dev.sh writes the "local" profile for the system it
// runs, with that run's emulator ports; manage-tokens (--profile) and
// devkit read it.
package profile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EnvVar names the profile used when none is given.
const EnvVar = "MANAGE_TOKENS_PROFILE"

// Local is the profile scripts/dev.sh writes.
const Local = "local"

// emulatorVars are decided by the profile alone: a production profile that
// does not name an emulator must not pick up one exported in the shell by a
// local session (nor the reverse).
var emulatorVars = []string{"FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST"}

// HelpPath is where profile name lives, as a help shows it.
func HelpPath(name string) string { return "~/.config/manage-tokens/" + name + ".env" }

// Path is the file of profile name: name itself when it is a path (it
// contains a / or ends in .env), else name.env in the manage-tokens
// directory of the user's configuration ($XDG_CONFIG_HOME, else ~/.config).
func Path(name string, getenv func(string) (string, bool)) (string, error) {
	if strings.ContainsRune(name, '/') || strings.HasSuffix(name, ".env") {
		return name, nil
	}
	dir, _ := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := getenv("HOME")
		if home == "" {
			return "", fmt.Errorf("profile %q: neither XDG_CONFIG_HOME nor HOME is set; give the profile's path", name)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "manage-tokens", name+".env"), nil
}

// Apply returns getenv with the variables of profile name over it: name,
// else $MANAGE_TOKENS_PROFILE; none: getenv as it is. The emulator hosts,
// which the client libraries read from the process environment, are set
// (or unset) there as the profile says.
func Apply(name string, getenv func(string) (string, bool)) (func(string) (string, bool), error) {
	if name == "" {
		name, _ = getenv(EnvVar)
	}
	if name = strings.TrimSpace(name); name == "" {
		return getenv, nil
	}
	path, err := Path(name, getenv)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) && name == Local {
			return nil, fmt.Errorf("profile local: %s does not exist: scripts/dev.sh writes it while the local system runs", path)
		}
		return nil, fmt.Errorf("profile %s: %w", name, err)
	}
	vars, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("profile %s (%s): %w", name, path, err)
	}
	for _, k := range emulatorVars {
		if v := vars[k]; v != "" {
			os.Setenv(k, v)
		} else {
			os.Unsetenv(k)
			vars[k] = ""
		}
	}
	return func(k string) (string, bool) {
		if v, ok := vars[k]; ok {
			return v, v != ""
		}
		return getenv(k)
	}, nil
}

// Parse reads KEY=VALUE lines: blank lines and # comments are skipped,
// "export " is allowed before a key, and a value may be quoted as a shell
// or Go would ("..." with escapes, '...' as is).
func Parse(data []byte) (map[string]string, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, fmt.Errorf("line %d: want KEY=VALUE, got %q", n, line)
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"':
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", n, k, err)
			}
			v = u
		case len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'':
			v = v[1 : len(v)-1]
		}
		vars[k] = v
	}
	return vars, sc.Err()
}
