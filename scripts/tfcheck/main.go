// Command tfcheck checks the project's Terraform against the schema of the
// hashicorp/google provider, standing in for `terraform validate` where the
// provider cannot be downloaded.
//
// It parses every directory of .tf files under terraform/ (the root
// configuration, the module in modules/plaid-token-lifecycle, the test
// fixtures), each as a module, and reports, one line per problem with
// file:line:
//
//   - resource and data source types the provider does not have;
//   - attributes that do not exist where they are set, or are computed-only;
//   - nested blocks that do not exist where they are used, including the
//     label and content of dynamic blocks, recursively;
//   - required attributes not set, and required nested blocks (min_items)
//     missing; more static blocks than max_items allows;
//   - providers other than hashicorp/google (required_providers, provider
//     blocks, the provider meta-argument);
//   - references to undeclared variables, locals, resources, data sources or
//     module calls, to attributes a referenced resource type does not have,
//     and to outputs a called module does not declare;
//   - module calls: the local source exists, every argument is a variable of
//     the called module, every variable without a default is set; a called
//     module configures no provider and no backend;
//   - moved blocks whose `to` is not declared.
//
// With -write-time-zones PATH it writes instead the IANA time zone names of
// Go's tz database (the list the module's time_zone validation reads).
//
// Usage:
//
//	go run ./scripts/tfcheck [-dir terraform] [-schema path/to/schema.json.gz]
//	go run ./scripts/tfcheck -write-time-zones terraform/modules/plaid-token-lifecycle/time_zones.txt
//
// The schema is `terraform providers schema -json` output, gzipped or not.
// By default it is read from scripts/tfcheck/schema/ (a copy kept in the
// repository, so a fresh clone checks itself), or from $TFCHECK_SCHEMA.
// With TFCHECK_ALLOW_MISSING_SCHEMA=1 a missing schema is a warning and only
// the schema-free checks run.
//
// Exit status: 0 without problems, 1 with problems, 2 when it cannot run.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// googleProvider is the provider address whose schema is checked against.
const googleProvider = "registry.terraform.io/hashicorp/google"

// defaultSchema is the schema file relative to the repository root.
const defaultSchema = "scripts/tfcheck/schema/google-provider-7.45.0-schema.json.gz"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("tfcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "directory of the root configuration; every directory of .tf files under it is checked (default: terraform/ at the repository root)")
	writeZones := fs.String("write-time-zones", "", "write the IANA time zone names of Go's tz database to this file, one a line, and exit")
	schemaPath := fs.String("schema", "", "provider schema JSON, optionally gzipped (default: $TFCHECK_SCHEMA, else "+defaultSchema+" from the repository root)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "tfcheck: unexpected arguments %q\n", fs.Args())
		return 2
	}

	if *writeZones != "" {
		if err := WriteTimeZones(*writeZones); err != nil {
			fmt.Fprintf(stderr, "tfcheck: %v\n", err)
			return 2
		}
		return 0
	}

	root, rootErr := repoRoot()
	if *dir == "" {
		if rootErr != nil {
			fmt.Fprintf(stderr, "tfcheck: %v; pass -dir\n", rootErr)
			return 2
		}
		*dir = filepath.Join(root, "terraform")
	}
	if *schemaPath == "" {
		*schemaPath = os.Getenv("TFCHECK_SCHEMA")
	}
	if *schemaPath == "" {
		if rootErr != nil {
			fmt.Fprintf(stderr, "tfcheck: %v; pass -schema\n", rootErr)
			return 2
		}
		*schemaPath = filepath.Join(root, defaultSchema)
	}

	schema, err := LoadSchema(*schemaPath)
	if errors.Is(err, os.ErrNotExist) && os.Getenv("TFCHECK_ALLOW_MISSING_SCHEMA") == "1" {
		fmt.Fprintf(stderr, "tfcheck: warning: no provider schema at %s (TFCHECK_ALLOW_MISSING_SCHEMA=1): only schema-free checks run\n", *schemaPath)
		schema = nil
	} else if err != nil {
		fmt.Fprintf(stderr, "tfcheck: %v (pass -schema or set TFCHECK_SCHEMA)\n", err)
		return 2
	}

	res, err := CheckTree(*dir, schema)
	if err != nil {
		fmt.Fprintf(stderr, "tfcheck: %v\n", err)
		return 2
	}
	cwd, _ := os.Getwd()
	for _, p := range res.Problems {
		if rel, err := filepath.Rel(cwd, p.File); err == nil && cwd != "" && p.File != "" && !strings.HasPrefix(rel, "..") {
			p.File = rel
		}
		fmt.Fprintln(stdout, p.String())
	}
	fmt.Fprintf(stdout, "tfcheck: %d modules, %d resources, %d data sources checked, %d problems\n", res.Modules, res.Resources, res.DataSources, len(res.Problems))
	if len(res.Problems) > 0 {
		return 1
	}
	return 0
}

// repoRoot returns the nearest directory at or above the working directory
// that holds both a go.mod and terraform/: the repository root (tfcheck is a
// module of its own, so its own go.mod is not the answer).
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		_, errMod := os.Stat(filepath.Join(dir, "go.mod"))
		_, errTF := os.Stat(filepath.Join(dir, "terraform"))
		if errMod == nil && errTF == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no repository root (go.mod beside terraform/) at or above the working directory")
		}
		dir = parent
	}
}

// Schema is the part of `terraform providers schema -json` for one provider
// that the checks need.
type Schema struct {
	Provider    Block
	Resources   map[string]Block
	DataSources map[string]Block
}

// Block is a configuration block: its attributes and nested block types.
type Block struct {
	Attributes map[string]Attribute `json:"attributes"`
	BlockTypes map[string]BlockType `json:"block_types"`
}

// Attribute says how an attribute may be set.
type Attribute struct {
	Required bool `json:"required"`
	Optional bool `json:"optional"`
	Computed bool `json:"computed"`
}

// BlockType is a nested block type with its cardinality.
type BlockType struct {
	NestingMode string `json:"nesting_mode"`
	Block       Block  `json:"block"`
	MinItems    int    `json:"min_items"`
	MaxItems    int    `json:"max_items"`
}

// LoadSchema reads the hashicorp/google schema from a
// `terraform providers schema -json` file, gzipped or plain.
func LoadSchema(path string) (*Schema, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading provider schema: %w", err)
	}
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("reading provider schema %s: %w", path, err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("reading provider schema %s: %w", path, err)
		}
	}
	type wrapped struct {
		Block Block `json:"block"`
	}
	var doc struct {
		ProviderSchemas map[string]struct {
			Provider          wrapped            `json:"provider"`
			ResourceSchemas   map[string]wrapped `json:"resource_schemas"`
			DataSourceSchemas map[string]wrapped `json:"data_source_schemas"`
		} `json:"provider_schemas"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decoding provider schema %s: %w", path, err)
	}
	p, ok := doc.ProviderSchemas[googleProvider]
	if !ok {
		return nil, fmt.Errorf("provider schema %s has no %s", path, googleProvider)
	}
	s := &Schema{
		Provider:    p.Provider.Block,
		Resources:   make(map[string]Block, len(p.ResourceSchemas)),
		DataSources: make(map[string]Block, len(p.DataSourceSchemas)),
	}
	for name, r := range p.ResourceSchemas {
		s.Resources[name] = r.Block
	}
	for name, d := range p.DataSourceSchemas {
		s.DataSources[name] = d.Block
	}
	return s, nil
}

// Problem is one finding, at a place in a file.
type Problem struct {
	Pos     hcl.Pos
	File    string
	Message string
}

func (p Problem) String() string { return fmt.Sprintf("%s:%d: %s", p.File, p.Pos.Line, p.Message) }

// Result is what CheckTree found.
type Result struct {
	Modules     int // directories of .tf files
	Resources   int // resource blocks
	DataSources int // data blocks
	Problems    []Problem
}

// CheckTree checks every directory of .tf files at or below dir (skipping
// hidden ones such as .terraform), each as a Terraform module, and the calls
// between them. A nil schema skips the checks that need the provider schema.
func CheckTree(dir string, schema *Schema) (Result, error) {
	var dirs []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), ".tf") {
			if len(dirs) == 0 || dirs[len(dirs)-1] != filepath.Dir(path) {
				dirs = append(dirs, filepath.Dir(path))
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, err
	}
	if len(dirs) == 0 {
		return Result{}, fmt.Errorf("no .tf files in %s", dir)
	}

	t := &tree{modules: map[string]*checker{}}
	for _, d := range dirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return Result{}, err
		}
		t.modules[abs] = t.parse(abs, schema)
	}
	// Every module's declarations are known before any is checked: calls and
	// references cross modules.
	for _, c := range t.modules {
		c.resolveCalls()
	}
	res := Result{Modules: len(t.modules)}
	for _, d := range sortedKeys(t.modules) {
		c := t.modules[d]
		c.check()
		res.Resources += c.nResources
		res.DataSources += c.nData
	}
	sort.SliceStable(t.problems, func(i, j int) bool {
		a, b := t.problems[i], t.problems[j]
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Pos.Line < b.Pos.Line
	})
	res.Problems = t.problems
	return res, nil
}

// Check checks the one module in dir, and the modules it calls, as CheckTree
// does for a whole tree.
func Check(dir string, schema *Schema) (Result, error) { return CheckTree(dir, schema) }

// tree is every module found, by absolute directory, and what was found
// wrong in any of them.
type tree struct {
	modules  map[string]*checker
	problems []Problem
}

func (t *tree) parse(dir string, schema *Schema) *checker {
	c := &checker{
		tree:      t,
		dir:       dir,
		schema:    schema,
		variables: map[string]bool{},
		outputs:   map[string]bool{},
		locals:    map[string]bool{},
		resources: map[string]hcl.Range{},
		data:      map[string]hcl.Range{},
		calls:     map[string]*moduleCall{},
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	sort.Strings(paths)
	parser := hclparse.NewParser()
	for _, path := range paths {
		f, diags := parser.ParseHCLFile(path)
		c.addDiags(diags)
		if f == nil || diags.HasErrors() {
			c.incomplete = true
			continue
		}
		c.bodies = append(c.bodies, f.Body.(*hclsyntax.Body))
	}
	// Declarations first: references may point into any file.
	for _, body := range c.bodies {
		c.declare(body)
	}
	return c
}

// checker checks one module (one directory of .tf files).
type checker struct {
	tree   *tree
	dir    string
	schema *Schema
	bodies []*hclsyntax.Body

	variables map[string]bool // name => required (no default)
	outputs   map[string]bool
	locals    map[string]bool
	resources map[string]hcl.Range // "type.name"
	data      map[string]hcl.Range // "type.name"
	calls     map[string]*moduleCall

	// configures lists the provider and backend blocks of the module: a
	// module called by another must have none.
	configures []*hclsyntax.Block
	// calledFrom is a call of this module from another one, if any.
	calledFrom *moduleCall

	// incomplete is set when a file did not parse: its declarations are
	// unknown, so references are not checked (they would all look undeclared).
	incomplete bool

	nResources, nData int
}

// moduleCall is a module block.
type moduleCall struct {
	block  *hclsyntax.Block
	source string
	callee *checker // nil unless the source is a local directory found
}

func (c *checker) report(r hcl.Range, format string, args ...any) {
	c.tree.problems = append(c.tree.problems, Problem{Pos: r.Start, File: r.Filename, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) addDiags(diags hcl.Diagnostics) {
	for _, d := range diags {
		r := hcl.Range{}
		if d.Subject != nil {
			r = *d.Subject
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		c.report(r, "%s", msg)
	}
}

func (c *checker) declare(body *hclsyntax.Body) {
	for _, b := range body.Blocks {
		switch b.Type {
		case "variable":
			if len(b.Labels) == 1 {
				_, hasDefault := b.Body.Attributes["default"]
				c.variables[b.Labels[0]] = !hasDefault
			}
		case "output":
			if len(b.Labels) == 1 {
				c.outputs[b.Labels[0]] = true
			}
		case "locals":
			for name := range b.Body.Attributes {
				c.locals[name] = true
			}
		case "provider":
			c.configures = append(c.configures, b)
		case "terraform":
			for _, inner := range b.Body.Blocks {
				if inner.Type == "backend" || inner.Type == "cloud" {
					c.configures = append(c.configures, inner)
				}
			}
		case "module":
			if len(b.Labels) != 1 {
				c.report(b.DefRange(), "module block needs one label, its name")
				continue
			}
			if first, dup := c.calls[b.Labels[0]]; dup {
				r := first.block.DefRange()
				c.report(b.DefRange(), "duplicate module %q: first declared at %s:%d", b.Labels[0], r.Filename, r.Start.Line)
				continue
			}
			call := &moduleCall{block: b}
			if attr, ok := b.Body.Attributes["source"]; ok {
				if v, diags := attr.Expr.Value(nil); !diags.HasErrors() && v.Type() == cty.String && v.IsKnown() && !v.IsNull() {
					call.source = v.AsString()
				} else {
					c.report(attr.Expr.Range(), "module %q: source must be a literal string", b.Labels[0])
				}
			} else {
				c.report(b.DefRange(), "module %q: missing required argument \"source\"", b.Labels[0])
			}
			c.calls[b.Labels[0]] = call
		case "resource", "data":
			if len(b.Labels) != 2 {
				continue
			}
			seen := c.resources
			if b.Type == "data" {
				seen = c.data
			}
			key := b.Labels[0] + "." + b.Labels[1]
			if first, dup := seen[key]; dup {
				c.report(b.DefRange(), "duplicate %s %q: first declared at %s:%d", b.Type, key, first.Filename, first.Start.Line)
				continue
			}
			seen[key] = b.DefRange()
		}
	}
}

// resolveCalls finds the module each local module call names.
func (c *checker) resolveCalls() {
	for _, name := range sortedKeys(c.calls) {
		call := c.calls[name]
		if !strings.HasPrefix(call.source, "./") && !strings.HasPrefix(call.source, "../") {
			continue // a registry or remote module: nothing here to check against
		}
		dir := filepath.Clean(filepath.Join(c.dir, call.source))
		callee, ok := c.tree.modules[dir]
		if !ok {
			c.report(call.block.Body.Attributes["source"].Expr.Range(), "module %q: source %q is not a directory of .tf files", name, call.source)
			continue
		}
		call.callee = callee
		if callee.calledFrom == nil {
			callee.calledFrom = call
		}
	}
}

// check checks every file of the module, then its module calls.
func (c *checker) check() {
	for _, body := range c.bodies {
		c.checkFile(body)
	}
	if c.calledFrom != nil {
		from := c.calledFrom.block.DefRange()
		for _, b := range c.configures {
			c.report(b.DefRange(), "%s block in a module called from %s:%d: a called module must configure no provider and no backend (the caller does)", b.Type, from.Filename, from.Start.Line)
		}
	}
	for _, name := range sortedKeys(c.calls) {
		c.checkCall(name, c.calls[name])
	}
}

// moduleMetaArgs are the arguments of a module block that are not the
// called module's variables.
var moduleMetaArgs = map[string]bool{"source": true, "version": true, "count": true, "for_each": true, "depends_on": true, "providers": true}

// checkCall checks a module call's arguments against the called module's
// variables.
func (c *checker) checkCall(name string, call *moduleCall) {
	if call.callee == nil || call.callee.incomplete {
		return
	}
	for _, arg := range sortedKeys(call.block.Body.Attributes) {
		if moduleMetaArgs[arg] {
			continue
		}
		if _, ok := call.callee.variables[arg]; !ok {
			c.report(call.block.Body.Attributes[arg].NameRange, "module %q: unsupported argument %q: %s declares no such variable", name, arg, call.source)
		}
	}
	for _, v := range sortedKeys(call.callee.variables) {
		if !call.callee.variables[v] {
			continue
		}
		if _, set := call.block.Body.Attributes[v]; !set {
			c.report(call.block.DefRange(), "module %q: missing required argument %q (a variable of %s without a default)", name, v, call.source)
		}
	}
}

func (c *checker) checkFile(body *hclsyntax.Body) {
	for name, attr := range body.Attributes {
		c.report(attr.NameRange, "unexpected top-level attribute %q", name)
	}
	for _, b := range body.Blocks {
		switch b.Type {
		case "terraform":
			c.checkTerraformBlock(b)
		case "provider":
			c.checkProviderBlock(b)
		case "resource", "data":
			c.checkResource(b)
		case "variable":
			// type is a type constraint, not an expression of references.
			body := *b.Body
			body.Attributes = withoutKeys(body.Attributes, "type")
			c.checkReferences(&body, nil)
		case "module":
			// source is a path, providers maps provider configurations.
			body := *b.Body
			body.Attributes = withoutKeys(body.Attributes, "source", "providers")
			c.checkReferences(&body, nil)
		case "moved":
			c.checkMoved(b)
		case "removed", "import":
			// from and to name objects that need not be declared here.
		default:
			// locals, output, check: nothing provider-specific, but their
			// references must resolve.
			c.checkReferences(b.Body, nil)
		}
	}
}

// checkTerraformBlock allows only hashicorp/google in required_providers.
func (c *checker) checkTerraformBlock(b *hclsyntax.Block) {
	for _, inner := range b.Body.Blocks {
		if inner.Type != "required_providers" {
			continue
		}
		for name, attr := range inner.Body.Attributes {
			source := "hashicorp/" + name // the implied source of a bare version constraint
			if v, diags := attr.Expr.Value(nil); !diags.HasErrors() && v.IsKnown() && !v.IsNull() && v.Type().IsObjectType() && v.Type().HasAttribute("source") {
				if s := v.GetAttr("source"); s.Type() == cty.String && s.IsKnown() && !s.IsNull() {
					source = s.AsString()
				}
			}
			source = strings.TrimPrefix(strings.ToLower(source), "registry.terraform.io/")
			if name != "google" || source != "hashicorp/google" {
				c.report(attr.NameRange, "required provider %q (%s): only hashicorp/google may be used", name, source)
			}
		}
	}
}

func (c *checker) checkProviderBlock(b *hclsyntax.Block) {
	if len(b.Labels) != 1 || b.Labels[0] != "google" {
		c.report(b.DefRange(), "provider %q: only hashicorp/google may be used", strings.Join(b.Labels, " "))
		c.checkReferences(b.Body, nil)
		return
	}
	if c.schema != nil {
		c.checkBody(b.Body, c.schema.Provider, `provider "google"`, map[string]bool{"alias": true})
	}
	c.checkReferences(b.Body, nil)
}

var (
	resourceMetaAttrs = map[string]bool{"count": true, "for_each": true, "depends_on": true, "provider": true}
	resourceMetaBlock = map[string]bool{"lifecycle": true, "provisioner": true, "connection": true}
	dataMetaBlock     = map[string]bool{"lifecycle": true}
)

func (c *checker) checkResource(b *hclsyntax.Block) {
	kind, schemas, metaBlocks := "resource", map[string]Block(nil), resourceMetaBlock
	if b.Type == "data" {
		kind, metaBlocks = "data source", dataMetaBlock
		c.nData++
	} else {
		c.nResources++
	}
	if c.schema != nil {
		schemas = c.schema.Resources
		if b.Type == "data" {
			schemas = c.schema.DataSources
		}
	}
	if len(b.Labels) != 2 {
		c.report(b.DefRange(), "%s block needs a type and a name label", b.Type)
		return
	}
	typ := b.Labels[0]
	where := typ + "." + b.Labels[1]
	if b.Type == "data" {
		where = "data." + where
	}

	if attr, ok := b.Body.Attributes["provider"]; ok {
		if t, ok := attr.Expr.(*hclsyntax.ScopeTraversalExpr); !ok || t.Traversal.RootName() != "google" {
			c.report(attr.Expr.Range(), "%s: provider must be google (or google.<alias>): only hashicorp/google may be used", where)
		}
	}
	if _, hasCount := b.Body.Attributes["count"]; hasCount {
		if _, hasForEach := b.Body.Attributes["for_each"]; hasForEach {
			c.report(b.DefRange(), "%s: count and for_each cannot both be set", where)
		}
	}
	for _, inner := range b.Body.Blocks {
		if inner.Type == "lifecycle" {
			for name, attr := range inner.Body.Attributes {
				switch name {
				case "create_before_destroy", "prevent_destroy", "ignore_changes", "replace_triggered_by":
				default:
					c.report(attr.NameRange, "%s: unsupported lifecycle argument %q", where, name)
				}
			}
		}
	}

	if c.schema != nil {
		schema, ok := schemas[typ]
		if !ok {
			hint := ""
			if !strings.HasPrefix(typ, "google_") {
				hint = ": only hashicorp/google may be used"
			}
			c.report(b.LabelRanges[0], "unknown %s type %q in the google provider schema%s", kind, typ, hint)
		} else {
			c.checkBodyWithMeta(b.Body, schema, where, resourceMetaAttrs, metaBlocks)
		}
	}
	c.checkReferences(b.Body, nil)
}

// checkBody checks a block body against its schema, allowing the given
// extra attribute names.
func (c *checker) checkBody(body *hclsyntax.Body, schema Block, where string, extraAttrs map[string]bool) {
	c.checkBodyWithMeta(body, schema, where, extraAttrs, nil)
}

func (c *checker) checkBodyWithMeta(body *hclsyntax.Body, schema Block, where string, metaAttrs, metaBlocks map[string]bool) {
	for _, name := range sortedKeys(body.Attributes) {
		attr := body.Attributes[name]
		if metaAttrs[name] {
			continue
		}
		a, ok := schema.Attributes[name]
		switch {
		case !ok:
			if _, isBlock := schema.BlockTypes[name]; isBlock {
				c.report(attr.NameRange, "%s: %q is a block: write %s { ... }", where, name, name)
			} else {
				c.report(attr.NameRange, "%s: unsupported attribute %q", where, name)
			}
		case a.Computed && !a.Optional && !a.Required:
			c.report(attr.NameRange, "%s: attribute %q is computed (read-only) and cannot be set", where, name)
		}
	}

	counts := map[string]int{}
	dynamic := map[string]bool{}
	for _, blk := range body.Blocks {
		if metaBlocks[blk.Type] {
			continue
		}
		if blk.Type == "dynamic" {
			c.checkDynamic(blk, schema, where)
			if len(blk.Labels) == 1 {
				dynamic[blk.Labels[0]] = true
			}
			continue
		}
		bt, ok := schema.BlockTypes[blk.Type]
		if !ok {
			if _, isAttr := schema.Attributes[blk.Type]; isAttr {
				c.report(blk.TypeRange, "%s: %q is an attribute: write %s = ...", where, blk.Type, blk.Type)
			} else {
				c.report(blk.TypeRange, "%s: unsupported block %q", where, blk.Type)
			}
			continue
		}
		counts[blk.Type]++
		c.checkBody(blk.Body, bt.Block, where+"."+blk.Type, nil)
	}

	for _, name := range sortedKeys(schema.Attributes) {
		if schema.Attributes[name].Required {
			if _, set := body.Attributes[name]; !set {
				c.report(body.SrcRange, "%s: missing required attribute %q", where, name)
			}
		}
	}
	for _, name := range sortedKeys(schema.BlockTypes) {
		bt := schema.BlockTypes[name]
		n := counts[name]
		if bt.MinItems > 0 && n < bt.MinItems && !dynamic[name] {
			c.report(body.SrcRange, "%s: missing required block %q (at least %d)", where, name, bt.MinItems)
		}
		if bt.MaxItems > 0 && n > bt.MaxItems {
			c.report(body.SrcRange, "%s: %d %q blocks, at most %d allowed", where, n, name, bt.MaxItems)
		}
	}
}

// checkDynamic checks a dynamic block: its label names a nested block type
// of the enclosing schema, and its content is checked against that type.
func (c *checker) checkDynamic(blk *hclsyntax.Block, schema Block, where string) {
	if len(blk.Labels) != 1 {
		c.report(blk.DefRange(), "%s: dynamic block needs one label, the block type", where)
		return
	}
	label := blk.Labels[0]
	bt, ok := schema.BlockTypes[label]
	if !ok {
		c.report(blk.LabelRanges[0], "%s: unsupported block %q (dynamic)", where, label)
	}
	for name, attr := range blk.Body.Attributes {
		switch name {
		case "for_each", "iterator", "labels":
		default:
			c.report(attr.NameRange, "%s: dynamic %q: unsupported argument %q (only for_each, iterator, labels and a content block)", where, label, name)
		}
	}
	if _, ok := blk.Body.Attributes["for_each"]; !ok {
		c.report(blk.Body.SrcRange, "%s: dynamic %q: missing for_each", where, label)
	}
	var contents []*hclsyntax.Block
	for _, inner := range blk.Body.Blocks {
		if inner.Type == "content" {
			contents = append(contents, inner)
		} else {
			c.report(inner.TypeRange, "%s: dynamic %q: unsupported block %q (only content)", where, label, inner.Type)
		}
	}
	if len(contents) != 1 {
		c.report(blk.Body.SrcRange, "%s: dynamic %q: needs exactly one content block, has %d", where, label, len(contents))
		return
	}
	if ok {
		c.checkBody(contents[0].Body, bt.Block, where+"."+label, nil)
	}
}

// --- references ----------------------------------------------------------

// builtinRoots are reference roots Terraform provides itself.
var builtinRoots = map[string]bool{
	"each": true, "count": true, "self": true, "path": true, "terraform": true,
}

// checkReferences checks every expression in body (recursively) for
// references to undeclared names. iterators are the names dynamic blocks
// bind around body.
func (c *checker) checkReferences(body *hclsyntax.Body, iterators map[string]bool) {
	for _, name := range sortedKeys(body.Attributes) {
		if name == "provider" {
			continue // a provider address, checked by checkResource
		}
		c.checkExpr(body.Attributes[name].Expr, iterators)
	}
	for _, blk := range body.Blocks {
		if blk.Type == "lifecycle" {
			// ignore_changes names the resource's own attributes.
			lc := *blk.Body
			lc.Attributes = withoutKeys(lc.Attributes, "ignore_changes")
			c.checkReferences(&lc, iterators)
			continue
		}
		inner := iterators
		if blk.Type == "dynamic" && len(blk.Labels) == 1 {
			name := blk.Labels[0]
			if it, ok := blk.Body.Attributes["iterator"]; ok {
				if t, ok := it.Expr.(*hclsyntax.ScopeTraversalExpr); ok {
					name = t.Traversal.RootName()
				}
			}
			inner = map[string]bool{name: true}
			for k := range iterators {
				inner[k] = true
			}
			// for_each is evaluated outside the iterator's scope.
			if fe, ok := blk.Body.Attributes["for_each"]; ok {
				c.checkExpr(fe.Expr, iterators)
			}
			if lb, ok := blk.Body.Attributes["labels"]; ok {
				c.checkExpr(lb.Expr, inner)
			}
			for _, content := range blk.Body.Blocks {
				c.checkReferences(content.Body, inner)
			}
			continue
		}
		c.checkReferences(blk.Body, inner)
	}
}

// refWalker visits an expression, tracking names bound by for expressions.
type refWalker struct {
	c         *checker
	iterators map[string]bool
	scopes    []map[string]struct{}
}

func (w *refWalker) localized(name string) bool {
	if w.iterators[name] {
		return true
	}
	for _, s := range w.scopes {
		if _, ok := s[name]; ok {
			return true
		}
	}
	return false
}

func (w *refWalker) Enter(n hclsyntax.Node) hcl.Diagnostics {
	switch e := n.(type) {
	case hclsyntax.ChildScope:
		w.scopes = append(w.scopes, e.LocalNames)
	case *hclsyntax.ScopeTraversalExpr:
		if !w.localized(e.Traversal.RootName()) {
			w.c.checkTraversal(e.Traversal)
		}
	case *hclsyntax.RelativeTraversalExpr:
		// google_x.name[each.key].attr: check .attr against the schema.
		if src, ok := e.Source.(*hclsyntax.IndexExpr); ok {
			if col, ok := src.Collection.(*hclsyntax.ScopeTraversalExpr); ok && !w.localized(col.Traversal.RootName()) {
				w.c.checkAttrsPast(col.Traversal, e.Traversal)
			}
		}
	case *hclsyntax.SplatExpr:
		// google_x.name[*].attr
		if src, ok := e.Source.(*hclsyntax.ScopeTraversalExpr); ok && !w.localized(src.Traversal.RootName()) {
			if each, ok := e.Each.(*hclsyntax.RelativeTraversalExpr); ok {
				w.c.checkAttrsPast(src.Traversal, each.Traversal)
			}
		}
	}
	return nil
}

func (w *refWalker) Exit(n hclsyntax.Node) hcl.Diagnostics {
	if _, ok := n.(hclsyntax.ChildScope); ok {
		w.scopes = w.scopes[:len(w.scopes)-1]
	}
	return nil
}

func (c *checker) checkExpr(expr hclsyntax.Expression, iterators map[string]bool) {
	hclsyntax.Walk(expr, &refWalker{c: c, iterators: iterators})
}

// checkTraversal checks one reference: its root names a declared variable,
// local value, resource or data source, and its attribute steps exist in the
// schema of a referenced resource or data source.
func (c *checker) checkTraversal(t hcl.Traversal) {
	if c.incomplete {
		return
	}
	root := t.RootName()
	names := attrNames(t)
	switch {
	case builtinRoots[root]:
	case root == "module":
		if len(names) < 2 {
			c.report(t.SourceRange(), "incomplete module reference: module.<name>")
			return
		}
		call, ok := c.calls[names[1]]
		if !ok {
			c.report(t.SourceRange(), "reference to undeclared module module.%s", names[1])
			return
		}
		if out := outputPast(t); out != "" && call.callee != nil && !call.callee.incomplete && !call.callee.outputs[out] {
			c.report(t.SourceRange(), "module.%s has no output %q (%s declares none)", names[1], out, call.source)
		}
	case root == "var":
		if len(names) < 2 {
			c.report(t.SourceRange(), "incomplete variable reference: var.<name>")
		} else if _, declared := c.variables[names[1]]; !declared {
			c.report(t.SourceRange(), "reference to undeclared variable var.%s", names[1])
		}

	case root == "local":
		if len(names) >= 2 && !c.locals[names[1]] {
			c.report(t.SourceRange(), "reference to undeclared local value local.%s", names[1])
		}
	case root == "data":
		if len(names) < 3 {
			c.report(t.SourceRange(), "incomplete data source reference: data.<type>.<name>")
			return
		}
		if _, ok := c.data[names[1]+"."+names[2]]; !ok {
			c.report(t.SourceRange(), "reference to undeclared data source data.%s.%s", names[1], names[2])
			return
		}
		c.checkAttrsPast(t, nil)
	default:
		if len(names) < 2 {
			c.report(t.SourceRange(), "reference to unknown name %q", root)
			return
		}
		if _, ok := c.resources[names[0]+"."+names[1]]; !ok {
			c.report(t.SourceRange(), "reference to undeclared resource %s.%s", names[0], names[1])
			return
		}
		c.checkAttrsPast(t, nil)
	}
}

// checkAttrsPast checks the attribute steps of t, then of rest (what follows
// an index expression or a splat on t), when t refers to a declared resource
// or data source whose type the schema has. Undeclared roots are reported by
// checkTraversal.
func (c *checker) checkAttrsPast(t, rest hcl.Traversal) {
	if c.schema == nil {
		return
	}
	names := attrNames(t)
	switch {
	case len(names) >= 3 && names[0] == "data":
		if _, declared := c.data[names[1]+"."+names[2]]; !declared {
			return
		}
		if s, ok := c.schema.DataSources[names[1]]; ok {
			c.checkAttrPath(t, rest, 3, s, "data."+names[1]+"."+names[2])
		}
	case len(names) >= 2 && !builtinRoots[names[0]] && names[0] != "var" && names[0] != "local" && names[0] != "module":
		if _, declared := c.resources[names[0]+"."+names[1]]; !declared {
			return
		}
		if s, ok := c.schema.Resources[names[0]]; ok {
			c.checkAttrPath(t, rest, 2, s, names[0]+"."+names[1])
		}
	}
}

// checkAttrPath checks the attribute steps of a reference to a resource or
// data source after its first skip name steps: each name is an attribute or
// a nested block of the schema. Checking stops at the first attribute: its
// value (a map, an object) is not described by the schema.
func (c *checker) checkAttrPath(t, rest hcl.Traversal, skip int, schema Block, what string) {
	steps := append(append(hcl.Traversal{}, t...), rest...)
	seen := 0
	cur := schema
	for _, step := range steps {
		var name string
		switch s := step.(type) {
		case hcl.TraverseRoot:
			name = s.Name
		case hcl.TraverseAttr:
			name = s.Name
		default:
			continue // indexes into counted resources or block lists
		}
		seen++
		if seen <= skip {
			continue
		}
		if _, ok := cur.Attributes[name]; ok {
			return
		}
		bt, ok := cur.BlockTypes[name]
		if !ok {
			c.report(t.SourceRange(), "%s has no attribute or block %q", what, name)
			return
		}
		cur = bt.Block
	}
}

// outputPast returns the output name of a module reference: the attribute
// after module.NAME, or after module.NAME[KEY] for a module with count or
// for_each; "" when there is none.
func outputPast(t hcl.Traversal) string {
	for i, step := range t {
		if i < 2 {
			continue
		}
		switch s := step.(type) {
		case hcl.TraverseAttr:
			return s.Name
		case hcl.TraverseIndex:
			if i == 2 {
				continue
			}
			return ""
		default:
			return ""
		}
	}
	return ""
}

// checkMoved checks that a moved block's `to` names a declared resource, here
// or, through module.NAME, in a called module. `from` names what the state
// had, which the configuration no longer declares.
func (c *checker) checkMoved(b *hclsyntax.Block) {
	attr, ok := b.Body.Attributes["to"]
	if !ok {
		c.report(b.DefRange(), "moved block needs to")
		return
	}
	if _, ok := b.Body.Attributes["from"]; !ok {
		c.report(b.DefRange(), "moved block needs from")
	}
	t, ok := attr.Expr.(*hclsyntax.ScopeTraversalExpr)
	if !ok {
		c.report(attr.Expr.Range(), "moved: to must be an address")
		return
	}
	target, steps := c, attrNames(t.Traversal)
	for len(steps) >= 2 && steps[0] == "module" {
		call, ok := target.calls[steps[1]]
		if !ok {
			c.report(t.Range(), "moved: to names undeclared module module.%s", steps[1])
			return
		}
		if call.callee == nil || call.callee.incomplete {
			return
		}
		target = call.callee
		// Past module.NAME (and an index of it) the address goes on.
		rest := hcl.Traversal{}
		seen := 0
		for _, step := range t.Traversal {
			if _, isAttrOrRoot := step.(hcl.TraverseIndex); !isAttrOrRoot {
				seen++
			}
			if seen > 2 {
				rest = append(rest, step)
			}
		}
		t = &hclsyntax.ScopeTraversalExpr{Traversal: rest, SrcRange: t.SrcRange}
		steps = attrNames(rest)
	}
	if len(steps) == 0 {
		return // a whole module moves
	}
	if steps[0] == "data" {
		c.report(t.Range(), "moved: data sources cannot be moved")
		return
	}
	if len(steps) < 2 {
		c.report(t.Range(), "moved: to must name a resource or a module")
		return
	}
	if _, ok := target.resources[steps[0]+"."+steps[1]]; !ok && !target.incomplete {
		c.report(t.Range(), "moved: to names undeclared resource %s.%s in %s", steps[0], steps[1], target.dir)
	}
}

// attrNames returns the names of a traversal's root and attribute steps up to
// its first index.
func attrNames(t hcl.Traversal) []string {
	var names []string
	for _, step := range t {
		switch s := step.(type) {
		case hcl.TraverseRoot:
			names = append(names, s.Name)
		case hcl.TraverseAttr:
			names = append(names, s.Name)
		default:
			return names
		}
	}
	return names
}

func withoutKeys(m hclsyntax.Attributes, drop ...string) hclsyntax.Attributes {
	out := make(hclsyntax.Attributes, len(m))
	for k, v := range m {
		out[k] = v
	}
	for _, k := range drop {
		delete(out, k)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
