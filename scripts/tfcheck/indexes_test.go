package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/finwell/plaid-token-lifecycle/lifecycle"
)

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
