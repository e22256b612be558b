package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
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
	"go.yaml.in/yaml/v3"

	"github.com/finwell/plaid-token-lifecycle/functions"
)

// The module's directory inside terraform/.
const module = "modules/plaid-token-lifecycle/"

func testRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

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
		// A module default of null (null means something there, such as
		// "leave as it is") is the root's null passed on as it is.
		if d, ok := mv.Body.Attributes["default"]; ok && source(t, d.Expr) != "null" {
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
// previous keys) iff Vault, AUTH_JWT_SECRET iff Auth,
// LEGACY_TOKEN_ENCRYPTION_KEY iff Legacy (while enable_legacy_token_key).
func TestTargetNeedsMatchSecrets(t *testing.T) {
	t.Parallel()
	secrets := terraformFunctionSecrets(t)

	if diff := cmp.Diff(sortedKeys(functions.TargetNeeds), sortedKeys(secrets)); diff != "" {
		t.Errorf("targets differ (-functions.TargetNeeds +Terraform local.function_catalog):\n%s", diff)
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
			"legacy_token_encryption_key":   needs.Legacy,
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
// module's local.function_catalog. An entry is an object, or a
// merge(profile, {...}) whose last argument holds the list; the list is a
// literal either way.
func terraformFunctionSecrets(t *testing.T) map[string]map[string]bool {
	t.Helper()
	var fns *hclsyntax.ObjectConsExpr
	for _, body := range parseDir(t, module) {
		for _, b := range body.Blocks {
			if b.Type != "locals" {
				continue
			}
			if attr, ok := b.Body.Attributes["function_catalog"]; ok {
				fns, _ = attr.Expr.(*hclsyntax.ObjectConsExpr)
			}
		}
	}
	if fns == nil {
		t.Fatal("the module has no local.function_catalog object")
	}
	out := map[string]map[string]bool{}
	for _, item := range fns.Items {
		key, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || key.Type() != cty.String {
			t.Fatalf("local.function_catalog: a key is not a literal name: %v", diags)
		}
		name := key.AsString()
		entry, ok := item.ValueExpr.(*hclsyntax.ObjectConsExpr)
		if call, isCall := item.ValueExpr.(*hclsyntax.FunctionCallExpr); isCall && call.Name == "merge" && len(call.Args) > 0 {
			entry, ok = call.Args[len(call.Args)-1].(*hclsyntax.ObjectConsExpr)
		}
		if !ok {
			t.Fatalf("local.function_catalog.%s is neither an object nor merge(..., {...})", name)
		}
		got := map[string]bool{}
		found := false
		for _, attr := range entry.Items {
			if hcl.ExprAsKeyword(attr.KeyExpr) != "secrets" {
				continue
			}
			found = true
			v, diags := attr.ValueExpr.Value(nil)
			if diags.HasErrors() || !v.CanIterateElements() {
				t.Fatalf("local.function_catalog.%s.secrets must be a literal list of strings: %v", name, diags)
			}
			for it := v.ElementIterator(); it.Next(); {
				_, s := it.Element()
				got[s.AsString()] = true
			}
		}
		if !found {
			t.Errorf("local.function_catalog.%s has no secrets list of its own", name)
		}
		out[name] = got
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
			t.Errorf("line %d: %q is not in Go's tz database (regenerate: go run ./scripts/tfcheck -write-time-zones)", i+1, n)
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

// TestModuleReadmeInSync checks the module README's tables against
// variables.tf and outputs.tf.
func TestModuleReadmeInSync(t *testing.T) {
	t.Parallel()
	root := testRepoRoot(t)
	want, err := ModuleReadmeWant(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, ModuleReadme))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, string(got)); diff != "" {
		t.Errorf("%s does not follow variables.tf and outputs.tf; run `go run ./scripts/tfcheck -write-readme` (-want +got):\n%s", ModuleReadme, diff)
	}
	for _, v := range sortedKeys(blocks(parseDir(t, module), "variable")) {
		if !strings.Contains(want, "| `"+v+"` |") {
			t.Errorf("the README's table has no row for variable %s", v)
		}
	}
}

// TestGoRuntimeFollowsGoMod checks that the functions are deployed on the
// runtime of go.mod's go line (go 1.26.x: go126): an older runtime cannot
// build the module, a newer one is an untested upgrade.
func TestGoRuntimeFollowsGoMod(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(testRepoRoot(t), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(data))
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	want := "go" + m[1] + m[2]
	v := blocks(parseDir(t, module), "variable")["go_runtime"]
	if v == nil {
		t.Fatal("the module has no variable go_runtime")
	}
	if got := source(t, v.Body.Attributes["default"].Expr); got != `"`+want+`"` {
		t.Errorf("go_runtime defaults to %s; go.mod's go line %s.%s wants %q", got, m[1], m[2], want)
	}
}

// TestProviderBillsTheProject checks the root configuration's provider
// names a quota project: the Firebase Rules API refuses a person's
// credentials without one, and the provider sends it
// (X-Goog-User-Project) only with user_project_override.
func TestProviderBillsTheProject(t *testing.T) {
	t.Parallel()
	p := blocks(parseDir(t, "."), "provider")["google"]
	if p == nil {
		t.Fatal(`terraform/ has no provider "google" block`)
	}
	for name, want := range map[string]string{"user_project_override": "true", "billing_project": "var.project_id"} {
		a, ok := p.Body.Attributes[name]
		if !ok {
			t.Errorf(`provider "google": %s is not set, want %s`, name, want)
			continue
		}
		if got := source(t, a.Expr); got != want {
			t.Errorf(`provider "google": %s = %s, want %s`, name, got, want)
		}
	}
}

// TestTfvarsExample checks terraform.tfvars.example against the root
// variables (Terraform only warns about a value for an undeclared one) and
// that, copied as it is, it deploys to an empty project: there is no
// database there for it to name unless it creates one. Both of its phases
// plan in terraform/tests/example/.
func TestTfvarsExample(t *testing.T) {
	t.Parallel()
	path := filepath.Join(testRepoRoot(t), "terraform", "terraform.tfvars.example")
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %v", path, diags)
	}
	attrs := f.Body.(*hclsyntax.Body).Attributes
	vars := blocks(parseDir(t, "."), "variable")
	for _, name := range sortedKeys(attrs) {
		if _, ok := vars[name]; !ok {
			t.Errorf("terraform.tfvars.example sets %s, which terraform/variables.tf does not declare", name)
		}
	}
	for name, v := range vars {
		if _, hasDefault := v.Body.Attributes["default"]; !hasDefault {
			if _, set := attrs[name]; !set {
				t.Errorf("terraform.tfvars.example leaves out %s, which has no default", name)
			}
		}
	}
	if a, ok := attrs["create_firestore_database"]; !ok || source(t, a.Expr) != "true" {
		t.Error("terraform.tfvars.example must set create_firestore_database = true: an empty project has no database to name")
	}
}

// TestCloudBuildAppliesOnlyWhenAsked checks cloudbuild.yaml's guard: the
// steps that need the deployer's roles (reading secret payloads, applying,
// releasing rules) act only when _APPLY is "true", which only the approved
// deploy trigger sets, and the plan of every other build neither locks nor
// refreshes the state, so that the read-only planner account of
// pull-request builds can make it.
func TestCloudBuildAppliesOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Join(testRepoRoot(t), "cloudbuild.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var build struct {
		Substitutions map[string]string `yaml:"substitutions"`
		Steps         []struct {
			ID         string   `yaml:"id"`
			Entrypoint string   `yaml:"entrypoint"`
			Args       []string `yaml:"args"`
		} `yaml:"steps"`
	}
	if err := yaml.Unmarshal(data, &build); err != nil {
		t.Fatal(err)
	}
	if build.Substitutions["_APPLY"] != "false" {
		t.Errorf("_APPLY defaults to %q, want \"false\": a trigger that sets nothing must not apply", build.Substitutions["_APPLY"])
	}
	guarded := map[string]bool{}
	var plan string
	for _, s := range build.Steps {
		script := strings.Join(s.Args, " ")
		if s.Entrypoint == "" && len(s.Args) > 0 && s.Args[0] == "apply" {
			t.Errorf("step %s runs terraform apply unconditionally", s.ID)
		}
		acts := strings.Contains(script, "terraform apply") || strings.Contains(script, "deploytool")
		if !acts {
			if s.ID == "tf-plan" {
				plan = script
			}
			continue
		}
		guard := regexp.MustCompile(`if \[ "\$\{_APPLY\}" (=|!=) "true" \]`)
		if !guard.MatchString(script) {
			t.Errorf("step %s acts without checking _APPLY:\n%s", s.ID, script)
		}
		guarded[s.ID] = true
	}
	for _, id := range []string{"check-config", "tf-apply", "release-rules"} {
		if !guarded[id] {
			t.Errorf("no guarded step %s in cloudbuild.yaml", id)
		}
	}
	if !regexp.MustCompile(`(?s)else\s+terraform plan "\$\$@" -lock=false -refresh=false`).MatchString(plan) {
		t.Errorf("tf-plan does not plan with -lock=false -refresh=false when it will not apply:\n%s", plan)
	}
}
