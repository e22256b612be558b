package main

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // LoadLocation without the system's zoneinfo

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/finwell/plaid-token-lifecycle/functions"
)

// parseDir parses every .tf file of a directory of the real terraform/ tree.
func parseDir(t *testing.T, rel string) []*hclsyntax.Body {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(testRepoRoot(t), "terraform", rel, "*.tf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no .tf files in terraform/%s: %v", rel, err)
	}
	sort.Strings(paths)
	parser := hclparse.NewParser()
	var bodies []*hclsyntax.Body
	for _, p := range paths {
		f, diags := parser.ParseHCLFile(p)
		if diags.HasErrors() {
			t.Fatalf("parsing %s: %v", p, diags)
		}
		bodies = append(bodies, f.Body.(*hclsyntax.Body))
	}
	return bodies
}

// blocks returns the top-level blocks of a type, by their first label.
func blocks(bodies []*hclsyntax.Body, typ string) map[string]*hclsyntax.Block {
	out := map[string]*hclsyntax.Block{}
	for _, body := range bodies {
		for _, b := range body.Blocks {
			if b.Type == typ && len(b.Labels) > 0 {
				out[b.Labels[0]] = b
			}
		}
	}
	return out
}

// source returns the text of an expression as written.
func source(t *testing.T, expr hclsyntax.Expression) string {
	t.Helper()
	r := expr.Range()
	data, err := os.ReadFile(r.Filename)
	if err != nil {
		t.Fatal(err)
	}
	return string(data[r.Start.Byte:r.End.Byte])
}

// TestRootVariablesFollowModule checks that the root configuration exposes
// every variable of the module under the same name, type, description and
// sensitivity, leaves defaults to the module (default = null where the
// module has one, none where it has none), and passes each one on as
// name = var.name: the root is a mirror, and must not drift from it.
func TestRootVariablesFollowModule(t *testing.T) {
	t.Parallel()
	modVars := blocks(parseDir(t, module), "variable")
	rootBodies := parseDir(t, ".")
	rootVars := blocks(rootBodies, "variable")

	if diff := cmp.Diff(sortedKeys(modVars), sortedKeys(rootVars)); diff != "" {
		t.Errorf("terraform/variables.tf and the module's variables differ (-module +root):\n%s", diff)
	}
	for name, mv := range modVars {
		rv, ok := rootVars[name]
		if !ok {
			continue
		}
		for _, attr := range []string{"type", "description", "sensitive"} {
			ma, mok := mv.Body.Attributes[attr]
			ra, rok := rv.Body.Attributes[attr]
			switch {
			case mok != rok:
				t.Errorf("variable %q: %s set in the module %v, in the root %v", name, attr, mok, rok)
			case mok && source(t, ma.Expr) != source(t, ra.Expr):
				t.Errorf("variable %q: %s differs:\n module: %s\n root:   %s", name, attr, source(t, ma.Expr), source(t, ra.Expr))
			}
		}
		_, modDefault := mv.Body.Attributes["default"]
		rootDefault, hasRootDefault := rv.Body.Attributes["default"]
		switch {
		case modDefault && (!hasRootDefault || source(t, rootDefault.Expr) != "null"):
			t.Errorf("variable %q: the root must declare default = null, so that the module's default applies", name)
		case !modDefault && hasRootDefault:
			t.Errorf("variable %q: the module requires it, so the root must too (no default)", name)
		}
		if modDefault {
			if n, ok := mv.Body.Attributes["nullable"]; !ok || source(t, n.Expr) != "false" {
				t.Errorf("module variable %q has a default but is not nullable = false: the root's null would not take the default", name)
			}
		}
	}

	call, ok := blocks(rootBodies, "module")["plaid_token_lifecycle"]
	if !ok {
		t.Fatal(`terraform/main.tf has no module "plaid_token_lifecycle"`)
	}
	for name := range modVars {
		attr, ok := call.Body.Attributes[name]
		if !ok {
			t.Errorf("main.tf does not pass %s to the module", name)
			continue
		}
		if got := source(t, attr.Expr); got != "var."+name {
			t.Errorf("main.tf passes %s = %s, want var.%s", name, got, name)
		}
	}
}

// TestTargetNeedsMatchSecrets checks that the Terraform functions map and
// functions.TargetNeeds (what each deployed function refuses to start
// without) name the same targets, and that each function gets exactly the
// secrets it needs: PLAID_SECRET iff Plaid, TOKEN_ENCRYPTION_KEY (and the
// previous keys) iff Vault, AUTH_JWT_SECRET iff Auth.
func TestTargetNeedsMatchSecrets(t *testing.T) {
	t.Parallel()
	secrets := terraformFunctionSecrets(t)

	if diff := cmp.Diff(sortedKeys(functions.TargetNeeds), sortedKeys(secrets)); diff != "" {
		t.Errorf("targets differ (-functions.TargetNeeds +Terraform local.functions):\n%s", diff)
	}
	if len(secrets) != 8 {
		t.Errorf("Terraform deploys %d functions, want the eight of DESIGN §3", len(secrets))
	}
	for target, needs := range functions.TargetNeeds {
		got, ok := secrets[target]
		if !ok {
			continue
		}
		want := map[string]bool{
			"plaid_secret":                  needs.Plaid,
			"token_encryption_key":          needs.Vault,
			"token_encryption_key_previous": needs.Vault,
			"auth_jwt_secret":               needs.Auth,
		}
		for secret, needed := range want {
			if got[secret] != needed {
				t.Errorf("%s: Terraform gives %s = %v, functions.TargetNeeds %+v says %v", target, secret, got[secret], needs, needed)
			}
		}
		for secret := range got {
			if _, known := want[secret]; !known {
				t.Errorf("%s: Terraform gives it secret %q, which no field of lifecycle.Needs asks for", target, secret)
			}
		}
	}
}

// terraformFunctionSecrets reads the secrets list of every entry of the
// module's local.functions, which must be written as literals.
func terraformFunctionSecrets(t *testing.T) map[string]map[string]bool {
	t.Helper()
	var fns *hclsyntax.ObjectConsExpr
	for _, body := range parseDir(t, module) {
		for _, b := range body.Blocks {
			if b.Type != "locals" {
				continue
			}
			if attr, ok := b.Body.Attributes["functions"]; ok {
				fns, _ = attr.Expr.(*hclsyntax.ObjectConsExpr)
			}
		}
	}
	if fns == nil {
		t.Fatal("the module has no local.functions object")
	}
	out := map[string]map[string]bool{}
	for _, item := range fns.Items {
		key, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || key.Type() != cty.String {
			t.Fatalf("local.functions: a key is not a literal name: %v", diags)
		}
		entry, ok := item.ValueExpr.(*hclsyntax.ObjectConsExpr)
		if !ok {
			t.Fatalf("local.functions.%s is not an object", key.AsString())
		}
		got := map[string]bool{}
		found := false
		for _, attr := range entry.Items {
			name := hcl.ExprAsKeyword(attr.KeyExpr)
			if name != "secrets" {
				continue
			}
			found = true
			v, diags := attr.ValueExpr.Value(nil)
			if diags.HasErrors() || !v.CanIterateElements() {
				t.Fatalf("local.functions.%s.secrets must be a literal list of strings: %v", key.AsString(), diags)
			}
			for it := v.ElementIterator(); it.Next(); {
				_, s := it.Element()
				got[s.AsString()] = true
			}
		}
		if !found {
			t.Errorf("local.functions.%s has no secrets list", key.AsString())
		}
		out[key.AsString()] = got
	}
	return out
}

// TestTimeZonesList checks the list the module's time_zone validation reads:
// sorted and unique names, every one a zone Go's tz database knows and can
// load, the usual ones in it, invented ones not.
func TestTimeZonesList(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(testRepoRoot(t), TimeZonesFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte("\n")) {
		t.Errorf("%s does not end with a newline", TimeZonesFile)
	}
	names := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(names) < 400 {
		t.Fatalf("%s has %d names, want the whole tz database (about 600)", TimeZonesFile, len(names))
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("%s is not sorted", TimeZonesFile)
	}
	known, err := GoTimeZones()
	if err != nil {
		t.Fatal(err)
	}
	inGo := map[string]bool{}
	for _, n := range known {
		inGo[n] = true
	}
	seen := map[string]bool{}
	for i, n := range names {
		if seen[n] {
			t.Errorf("line %d: %q twice", i+1, n)
		}
		seen[n] = true
		if !inGo[n] {
			t.Errorf("line %d: %q is not in Go's tz database (regenerate: go run . -write-time-zones ../../%s)", i+1, n, TimeZonesFile)
		}
		if _, err := time.LoadLocation(n); err != nil {
			t.Errorf("line %d: %q: %v", i+1, n, err)
		}
	}
	for _, n := range []string{"Etc/UTC", "UTC", "America/New_York", "America/Argentina/Buenos_Aires", "Europe/London", "Europe/Berlin", "Asia/Kolkata", "Australia/Sydney", "Pacific/Auckland"} {
		if !seen[n] {
			t.Errorf("%s lacks %q", TimeZonesFile, n)
		}
	}
	for _, n := range []string{"Mars/Olympus", "Factory", "", "Local", "EST+5"} {
		if seen[n] {
			t.Errorf("%s has %q, which is no IANA time zone", TimeZonesFile, n)
		}
	}
}
