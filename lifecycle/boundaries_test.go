package lifecycle_test

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The seams, kept real: the domain reaches Firestore and Plaid
// only through the adapters named for them, and the handlers reach neither
// but through the domain.
func TestImportBoundaries(t *testing.T) {
	t.Parallel()
	firestore := []string{"cloud.google.com/go/firestore", "google.golang.org/api/iterator", "google.golang.org/grpc"}
	plaid := []string{"github.com/plaid/plaid-go"}
	rules := []struct {
		dir       string
		forbidden []string
		// allowed says which files may import a forbidden path anyway.
		allowed func(file, path string) bool
	}{
		{".", append(append(firestore, plaid...), "net/http"), func(file, path string) bool {
			switch {
			case strings.HasPrefix(file, "firestore"):
				return hasAnyPrefix(path, firestore)
			case file == "plaid_client.go":
				// The plaid-go adapter: its HTTP client, never a request
				// or response of ours.
				return hasAnyPrefix(path, plaid) || path == "net/http"
			}
			return false
		}},
		{"../functions", append(firestore, plaid...), func(string, string) bool { return false }},
	}
	for _, rule := range rules {
		files, err := filepath.Glob(filepath.Join(rule.dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no Go files in %s: %v", rule.dir, err)
		}
		for _, f := range files {
			name := filepath.Base(f)
			if strings.HasSuffix(name, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, src, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range parsed.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if hasAnyPrefix(path, rule.forbidden) && !rule.allowed(name, path) {
					t.Errorf("%s imports %s: only the adapter files may (firestore*.go for Firestore, plaid_client.go for plaid-go and net/http; none in functions/)", f, path)
				}
			}
		}
	}
}

func hasAnyPrefix(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}
