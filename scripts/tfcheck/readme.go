package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// ModuleDir is the module's directory, relative to the repository root.
const ModuleDir = "terraform/modules/plaid-token-lifecycle"

// ModuleReadme is the module's README, relative to the repository root. Its
// tables of variables and outputs sit between marker comments and are
// written from variables.tf and outputs.tf; the rest is prose.
const ModuleReadme = ModuleDir + "/README.md"

// The marker comments around the generated tables.
const (
	variablesBegin = "<!-- BEGIN VARIABLES (go run ./scripts/tfcheck -write-readme) -->"
	variablesEnd   = "<!-- END VARIABLES -->"
	outputsBegin   = "<!-- BEGIN OUTPUTS (go run ./scripts/tfcheck -write-readme) -->"
	outputsEnd     = "<!-- END OUTPUTS -->"
)

// ModuleReadmeWant returns the module README as it should read: the one in
// the repository with its tables rewritten from variables.tf and outputs.tf.
func ModuleReadmeWant(root string) (string, error) {
	current, err := os.ReadFile(filepath.Join(root, ModuleReadme))
	if err != nil {
		return "", err
	}
	vars, err := variablesTable(filepath.Join(root, ModuleDir, "variables.tf"))
	if err != nil {
		return "", err
	}
	outs, err := outputsTable(filepath.Join(root, ModuleDir, "outputs.tf"))
	if err != nil {
		return "", err
	}
	text, err := replaceBetween(string(current), variablesBegin, variablesEnd, vars)
	if err != nil {
		return "", fmt.Errorf("%s: %w", ModuleReadme, err)
	}
	if text, err = replaceBetween(text, outputsBegin, outputsEnd, outs); err != nil {
		return "", fmt.Errorf("%s: %w", ModuleReadme, err)
	}
	return text, nil
}

// WriteModuleReadme rewrites the module README's tables.
func WriteModuleReadme(root string) error {
	text, err := ModuleReadmeWant(root)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, ModuleReadme), []byte(text), 0o644)
}

func replaceBetween(text, begin, end, body string) (string, error) {
	i := strings.Index(text, begin)
	j := strings.Index(text, end)
	if i < 0 || j < i {
		return "", fmt.Errorf("no %q ... %q markers", begin, end)
	}
	return text[:i+len(begin)] + "\n" + body + text[j:], nil
}

// variablesTable is the markdown table of a variables.tf: name, type,
// default ("required" without one) and description, in file order.
func variablesTable(path string) (string, error) {
	blocks, src, err := topBlocks(path, "variable")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| name | type | default | description |\n|---|---|---|---|\n")
	for _, v := range blocks {
		typ := "any"
		if a, ok := v.Body.Attributes["type"]; ok {
			typ = exprText(src, a.Expr)
		}
		def := "required"
		if a, ok := v.Body.Attributes["default"]; ok {
			def = "`" + exprText(src, a.Expr) + "`"
		}
		desc := stringAttr(v.Body, "description")
		if a, ok := v.Body.Attributes["sensitive"]; ok && exprText(src, a.Expr) == "true" {
			desc = "Sensitive. " + desc
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", v.Labels[0], cell(typ), cell(def), cell(desc))
	}
	return b.String(), nil
}

// outputsTable is the markdown table of an outputs.tf: name and description.
func outputsTable(path string) (string, error) {
	blocks, _, err := topBlocks(path, "output")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("| name | description |\n|---|---|\n")
	for _, o := range blocks {
		fmt.Fprintf(&b, "| `%s` | %s |\n", o.Labels[0], cell(stringAttr(o.Body, "description")))
	}
	return b.String(), nil
}

func topBlocks(path, typ string) ([]*hclsyntax.Block, []byte, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	f, diags := hclparse.NewParser().ParseHCL(src, path)
	if diags.HasErrors() {
		return nil, nil, diags
	}
	var out []*hclsyntax.Block
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == typ && len(b.Labels) == 1 {
			out = append(out, b)
		}
	}
	return out, src, nil
}

// exprText is an expression as written, on one line.
func exprText(src []byte, e hclsyntax.Expression) string {
	r := e.Range()
	return strings.Join(strings.Fields(string(src[r.Start.Byte:r.End.Byte])), " ")
}

// stringAttr is the value of a literal string attribute, "" if missing.
func stringAttr(body *hclsyntax.Body, name string) string {
	a, ok := body.Attributes[name]
	if !ok {
		return ""
	}
	v, diags := a.Expr.Value(nil)
	if diags.HasErrors() || v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
		return ""
	}
	return v.AsString()
}

// cell escapes a table cell: a pipe would end it, and outside code spans
// <name> would be read as an HTML tag.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	parts := strings.Split(s, "`")
	for i := 0; i < len(parts); i += 2 { // even parts are outside code spans
		parts[i] = strings.NewReplacer("<", "&lt;", ">", "&gt;").Replace(parts[i])
	}
	return strings.Join(parts, "`")
}
