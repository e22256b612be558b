package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

var (
	schemaOnce sync.Once
	schemaVal  *Schema
	schemaErr  error
)

// testSchema loads the provider schema once for all tests. Without it the
// tests fail, unless TFCHECK_ALLOW_MISSING_SCHEMA=1 says this environment
// has no shared/ directory (they skip then).
func testSchema(t *testing.T) *Schema {
	t.Helper()
	schemaOnce.Do(func() {
		path := os.Getenv("TFCHECK_SCHEMA")
		if path == "" {
			path = filepath.Join(testRepoRoot(t), defaultSchema)
		}
		schemaVal, schemaErr = LoadSchema(path)
	})
	if schemaErr != nil {
		if os.Getenv("TFCHECK_ALLOW_MISSING_SCHEMA") == "1" {
			t.Skipf("provider schema unavailable: %v", schemaErr)
		}
		t.Fatalf("loading provider schema: %v", schemaErr)
	}
	return schemaVal
}

func testRepoRoot(t *testing.T) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// copyTerraform copies the .tf files of the real terraform/ tree (the root
// configuration, the module, the test fixtures) into a temporary directory.
func copyTerraform(t *testing.T) string {
	t.Helper()
	src := filepath.Join(testRepoRoot(t), "terraform")
	dst := t.TempDir()
	n := 0
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != src {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".tf") {
			return nil
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dst, filepath.Dir(rel)), 0o755); err != nil {
			return err
		}
		n++
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil || n == 0 {
		t.Fatalf("no terraform files in %s: %v", src, err)
	}
	return dst
}

// The module's directory inside terraform/.
const module = "modules/plaid-token-lifecycle/"

// edit rewrites one file of dir, failing when the edit changes nothing (the
// real Terraform moved on and the test must follow).
func edit(t *testing.T, dir, file string, change func(string) string) {
	t.Helper()
	path := filepath.Join(dir, file)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	changed := change(string(data))
	if changed == string(data) {
		t.Fatalf("edit of %s changed nothing", file)
	}
	if err := os.WriteFile(path, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
}

func replaceOnce(old, new string) func(string) string {
	return func(s string) string { return strings.Replace(s, old, new, 1) }
}

func replaceRegexpOnce(pattern, repl string) func(string) string {
	re := regexp.MustCompile(pattern)
	return func(s string) string {
		done := false
		return re.ReplaceAllStringFunc(s, func(m string) string {
			if done {
				return m
			}
			done = true
			return re.ReplaceAllString(m, repl)
		})
	}
}

func appendText(text string) func(string) string {
	return func(s string) string { return s + "\n" + text + "\n" }
}

func TestRealTerraformPasses(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)

	res, err := CheckTree(filepath.Join(testRepoRoot(t), "terraform"), schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Problems {
		t.Errorf("problem: %s", p)
	}
	if res.Resources == 0 {
		t.Error("no resources checked")
	}
	// The root configuration, the module, the two-instance test fixture.
	if res.Modules < 3 {
		t.Errorf("%d modules checked, want the root, the module and the test fixture", res.Modules)
	}
}

func TestBrokenTerraformFails(t *testing.T) {
	t.Parallel()
	schema := testSchema(t)

	tests := []struct {
		name   string
		file   string
		change func(string) string
		want   []string // substrings of one problem line
	}{
		{
			name:   "wrong attribute in nested block",
			file:   module + "functions.tf",
			change: replaceRegexpOnce(`available_memory(\s+)=`, "memory_mb$1      ="),
			want:   []string{"functions.tf:", "google_cloudfunctions2_function.function.service_config", `unsupported attribute "memory_mb"`},
		},
		{
			name:   "unknown nested block",
			file:   module + "functions.tf",
			change: replaceOnce("  service_config {\n", "  service_config {\n    vpc_access {}\n"),
			want:   []string{"functions.tf:", `unsupported block "vpc_access"`},
		},
		{
			name:   "unknown dynamic block label",
			file:   module + "functions.tf",
			change: replaceOnce(`dynamic "secret_environment_variables"`, `dynamic "secret_env_vars"`),
			want:   []string{"functions.tf:", `unsupported block "secret_env_vars" (dynamic)`},
		},
		{
			name:   "wrong attribute in dynamic content",
			file:   module + "functions.tf",
			change: replaceRegexpOnce(`(\n\s+)key(\s+)= local\.secrets`, "${1}name$2 = local.secrets"),
			want:   []string{"service_config.secret_environment_variables", `unsupported attribute "name"`},
		},
		{
			name:   "missing required attribute in dynamic content",
			file:   module + "functions.tf",
			change: replaceRegexpOnce(`(\n\s+)key(\s+)= local\.secrets`, "${1}name$2 = local.secrets"),
			want:   []string{"service_config.secret_environment_variables", `missing required attribute "key"`},
		},
		{
			name:   "computed-only attribute set",
			file:   module + "functions.tf",
			change: replaceOnce("  description = each.value.description\n", "  description = each.value.description\n  url         = \"https://example.com\"\n"),
			want:   []string{"functions.tf:", `attribute "url" is computed`},
		},
		{
			name:   "missing required attribute",
			file:   module + "pubsub.tf",
			change: replaceRegexpOnce(`\n  name\s+= each\.value\.name\n`, "\n"),
			want:   []string{"pubsub.tf:", "google_pubsub_topic.scheduled", `missing required attribute "name"`},
		},
		{
			name:   "missing required block",
			file:   module + "secrets.tf",
			change: replaceRegexpOnce(`(?s)\n  replication \{.*?\n  \}\n`, "\n"),
			want:   []string{"secrets.tf:", `missing required block "replication"`},
		},
		{
			name:   "unknown resource type",
			file:   module + "storage.tf",
			change: appendText(`resource "google_storage_bucket_thing" "x" {}`),
			want:   []string{"storage.tf:", `unknown resource type "google_storage_bucket_thing"`},
		},
		{
			name:   "resource of another provider",
			file:   module + "storage.tf",
			change: appendText("resource \"archive_file\" \"source\" {\n  type = \"zip\"\n}"),
			want:   []string{"storage.tf:", `unknown resource type "archive_file"`, "only hashicorp/google"},
		},
		{
			name:   "unknown data source type",
			file:   module + "iam.tf",
			change: appendText(`data "google_no_such_data" "x" {}`),
			want:   []string{"iam.tf:", `unknown data source type "google_no_such_data"`},
		},
		{
			name:   "non-google required provider",
			file:   module + "versions.tf",
			change: appendText("terraform {\n  required_providers {\n    archive = {\n      source = \"hashicorp/archive\"\n    }\n  }\n}"),
			want:   []string{"versions.tf:", `required provider "archive"`, "only hashicorp/google"},
		},
		{
			name:   "google-beta provider",
			file:   "providers.tf",
			change: appendText("provider \"google-beta\" {\n  project = var.project_id\n}"),
			want:   []string{"providers.tf:", `provider "google-beta"`, "only hashicorp/google"},
		},
		{
			name:   "unknown provider argument",
			file:   "providers.tf",
			change: replaceOnce("  region  = var.region\n", "  region  = var.region\n  regoin  = var.region\n"),
			want:   []string{"providers.tf:", `provider "google"`, `unsupported attribute "regoin"`},
		},
		{
			name:   "reference to undeclared resource",
			file:   module + "storage.tf",
			change: replaceOnce("bucket = google_storage_bucket.source.name", "bucket = google_storage_bucket.sources.name"),
			want:   []string{"storage.tf:", "reference to undeclared resource google_storage_bucket.sources"},
		},
		{
			name:   "reference to missing resource attribute",
			file:   module + "storage.tf",
			change: replaceOnce("bucket = google_storage_bucket.source.name", "bucket = google_storage_bucket.source.bucket_name"),
			want:   []string{"storage.tf:", `google_storage_bucket.source has no attribute or block "bucket_name"`},
		},
		{
			name:   "reference to missing attribute past an index",
			file:   module + "iam.tf",
			change: replaceOnce(".service_config[0].service\n", ".service_config[0].service_name\n"),
			want:   []string{"iam.tf:", `google_cloudfunctions2_function.function has no attribute or block "service_name"`},
		},
		{
			name:   "syntax error",
			file:   module + "pubsub.tf",
			change: appendText(`resource "google_pubsub_topic" "broken" {`),
			want:   []string{"pubsub.tf:", "Unclosed configuration block"},
		},
		{
			name:   "reference to undeclared variable",
			file:   module + "storage.tf",
			change: replaceOnce("source = var.source_zip_path", "source = var.source_zip"),
			want:   []string{"storage.tf:", "undeclared variable var.source_zip"},
		},
		{
			name:   "module argument the module does not declare",
			file:   "main.tf",
			change: replaceOnce("  region      = var.region\n", "  region      = var.region\n  regoin      = var.region\n"),
			want:   []string{"main.tf:", `module "plaid_token_lifecycle": unsupported argument "regoin"`},
		},
		{
			name:   "module call without a required argument",
			file:   "main.tf",
			change: replaceRegexpOnce(`\n  plaid_client_id\s+= var\.plaid_client_id\n`, "\n"),
			want:   []string{"main.tf:", `module "plaid_token_lifecycle": missing required argument "plaid_client_id"`},
		},
		{
			name:   "module source that does not exist",
			file:   "main.tf",
			change: replaceOnce(`"./modules/plaid-token-lifecycle"`, `"./modules/plaid-token-lifecyle"`),
			want:   []string{"main.tf:", `source "./modules/plaid-token-lifecyle" is not a directory of .tf files`},
		},
		{
			name:   "reference to an output the module does not declare",
			file:   "outputs.tf",
			change: replaceOnce("module.plaid_token_lifecycle.function_urls", "module.plaid_token_lifecycle.function_url"),
			want:   []string{"outputs.tf:", `module.plaid_token_lifecycle has no output "function_url"`},
		},
		{
			name:   "reference to an undeclared module",
			file:   "outputs.tf",
			change: replaceOnce("module.plaid_token_lifecycle.dashboard_id", "module.lifecycle.dashboard_id"),
			want:   []string{"outputs.tf:", "reference to undeclared module module.lifecycle"},
		},
		{
			name:   "provider block inside the module",
			file:   module + "versions.tf",
			change: appendText("provider \"google\" {\n  project = var.project_id\n}"),
			want:   []string{"versions.tf:", "provider block in a module called from", "configure no provider and no backend"},
		},
		{
			name:   "backend inside the module",
			file:   module + "versions.tf",
			change: replaceOnce("  required_version = \">= 1.11.0\"\n", "  required_version = \">= 1.11.0\"\n\n  backend \"gcs\" {}\n"),
			want:   []string{"versions.tf:", "backend block in a module called from"},
		},
		{
			name:   "moved to an undeclared resource",
			file:   "moved.tf",
			change: replaceOnce("to   = module.plaid_token_lifecycle.google_storage_bucket.source\n", "to   = module.plaid_token_lifecycle.google_storage_bucket.sources\n"),
			want:   []string{"moved.tf:", "moved: to names undeclared resource google_storage_bucket.sources"},
		},
		{
			name:   "reference to missing attribute inside the module",
			file:   module + "functions.tf",
			change: replaceOnce("google_service_account.function[each.key].email", "google_service_account.function[each.key].mail"),
			want:   []string{"functions.tf:", `google_service_account.function has no attribute or block "mail"`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := copyTerraform(t)
			edit(t, dir, tc.file, tc.change)

			res, err := CheckTree(dir, schema)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, p := range res.Problems {
				p.File = filepath.Base(p.File)
				lines = append(lines, p.String())
			}
			for _, line := range lines {
				if containsAll(line, tc.want) {
					return
				}
			}
			t.Errorf("no problem line contains all of %q; problems:\n%s", tc.want, strings.Join(lines, "\n"))
		})
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestRunOutput(t *testing.T) {
	t.Parallel()
	testSchema(t) // skip or fail as the other tests do without a schema
	root := testRepoRoot(t)
	schemaPath := os.Getenv("TFCHECK_SCHEMA")
	if schemaPath == "" {
		schemaPath = filepath.Join(root, defaultSchema)
	}

	t.Run("clean", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := run([]string{"-dir", filepath.Join(root, "terraform"), "-schema", schemaPath}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		if !regexp.MustCompile(`^tfcheck: [3-9] modules, [1-9][0-9]* resources, [0-9]+ data sources checked, 0 problems\n$`).MatchString(stdout.String()) {
			t.Errorf("stdout = %q", stdout.String())
		}
	})

	t.Run("problems", func(t *testing.T) {
		t.Parallel()
		dir := copyTerraform(t)
		edit(t, dir, module+"functions.tf", replaceRegexpOnce(`available_memory(\s+)=`, "memory_mb$1      ="))
		var stdout, stderr bytes.Buffer
		code := run([]string{"-dir", dir, "-schema", schemaPath}, &stdout, &stderr)
		if code != 1 {
			t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		if !regexp.MustCompile(`(?m)^\S*functions\.tf:\d+: .*"memory_mb"`).MatchString(stdout.String()) {
			t.Errorf("stdout has no file:line problem naming memory_mb:\n%s", stdout.String())
		}
		if !strings.HasSuffix(stdout.String(), "1 problems\n") {
			t.Errorf("stdout does not end with the count of 1 problem:\n%s", stdout.String())
		}
	})

	t.Run("missing schema", func(t *testing.T) {
		t.Parallel()
		var stdout, stderr bytes.Buffer
		code := run([]string{"-dir", filepath.Join(root, "terraform"), "-schema", filepath.Join(t.TempDir(), "none.json.gz")}, &stdout, &stderr)
		if code != 2 && os.Getenv("TFCHECK_ALLOW_MISSING_SCHEMA") != "1" {
			t.Errorf("exit %d, want 2; stderr:\n%s", code, stderr.String())
		}
	})
}

// firestoreIndex is a google_firestore_index as declared in firestore.tf.
type firestoreIndex struct {
	Collection string
	Fields     []lifecycle.IndexField
}

// TestFirestoreIndexesMatchLifecycle checks that the module's firestore.tf
// declares exactly the composite indexes lifecycle.CompositeIndexes says the
// code's queries need, with the same collection, field order and
// directions: a missing one fails the queries, an extra one costs writes for
// nothing.
func TestFirestoreIndexesMatchLifecycle(t *testing.T) {
	t.Parallel()
	path := filepath.Join(testRepoRoot(t), "terraform", module, "firestore.tf")
	declared := declaredIndexes(t, path)
	for _, want := range lifecycle.CompositeIndexes {
		if missing := missingIndex(want, declared); missing != "" {
			t.Errorf("%s has no google_firestore_index for %s (needed by %q); declared: %+v", path, missing, want.Query, declared)
		}
	}
	for _, got := range declared {
		needed := false
		for _, want := range lifecycle.CompositeIndexes {
			if missingIndex(want, []firestoreIndex{got}) == "" {
				needed = true
			}
		}
		if !needed {
			t.Errorf("%s declares %s, which no entry of lifecycle.CompositeIndexes needs: remove it (or add the query that needs it there)", path, indexString(got))
		}
	}
}

// TestFirestoreIndexMismatchDetected guards the test above: an index with a
// field in the wrong direction does not count.
func TestFirestoreIndexMismatchDetected(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "firestore.tf")
	src := `resource "google_firestore_index" "runs" {
  collection = "plaid_token_runs"
  fields {
    field_path = "kind"
    order      = "ASCENDING"
  }
  fields {
    field_path = "started_at"
    order      = "ASCENDING"
  }
}
`
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	want := lifecycle.CompositeIndex{
		Collection: "plaid_token_runs",
		Fields:     []lifecycle.IndexField{{Path: "kind"}, {Path: "started_at", Descending: true}},
	}
	if missingIndex(want, declaredIndexes(t, path)) == "" {
		t.Error("an ascending started_at index was accepted for a descending one")
	}
	want.Fields[1].Descending = false
	if missing := missingIndex(want, declaredIndexes(t, path)); missing != "" {
		t.Errorf("matching index reported missing: %s", missing)
	}
}

// missingIndex returns want as text when no declared index matches it, else "".
func missingIndex(want lifecycle.CompositeIndex, declared []firestoreIndex) string {
	wantIdx := firestoreIndex{Collection: want.Collection, Fields: want.Fields}
	for _, got := range declared {
		if cmp.Diff(wantIdx, got) == "" {
			return ""
		}
	}
	return indexString(wantIdx)
}

// declaredIndexes returns the google_firestore_index resources of a file.
func declaredIndexes(t *testing.T, path string) []firestoreIndex {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("parsing %s: %v", path, diags)
	}
	var declared []firestoreIndex
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type != "resource" || len(b.Labels) != 2 || b.Labels[0] != "google_firestore_index" {
			continue
		}
		idx := firestoreIndex{Collection: literalString(t, b.Body, "collection")}
		for _, fb := range b.Body.Blocks {
			if fb.Type != "fields" {
				continue
			}
			field := lifecycle.IndexField{Path: literalString(t, fb.Body, "field_path")}
			switch order := literalString(t, fb.Body, "order"); order {
			case "ASCENDING":
			case "DESCENDING":
				field.Descending = true
			default:
				t.Errorf("%s: index on %s: field %s has order %q, want ASCENDING or DESCENDING", path, idx.Collection, field.Path, order)
			}
			// Firestore appends __name__ itself; declaring it is optional.
			if field.Path != "__name__" {
				idx.Fields = append(idx.Fields, field)
			}
		}
		declared = append(declared, idx)
	}
	return declared
}

func indexString(idx firestoreIndex) string {
	var parts []string
	for _, f := range idx.Fields {
		dir := "ASC"
		if f.Descending {
			dir = "DESC"
		}
		parts = append(parts, f.Path+" "+dir)
	}
	return idx.Collection + "(" + strings.Join(parts, ", ") + ")"
}

// literalString returns the value of a string attribute written as a
// literal: index definitions must be readable without evaluating anything.
func literalString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	attr, ok := body.Attributes[name]
	if !ok {
		t.Errorf("%s:%d: missing %s", body.SrcRange.Filename, body.SrcRange.Start.Line, name)
		return ""
	}
	v, diags := attr.Expr.Value(nil)
	if diags.HasErrors() || v.Type() != cty.String || v.IsNull() || !v.IsKnown() {
		t.Errorf("%s:%d: %s must be a literal string", attr.SrcRange.Filename, attr.SrcRange.Start.Line, name)
		return ""
	}
	return v.AsString()
}
