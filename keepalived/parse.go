package keepalived

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxIncludeDepth bounds nested includes (keepalived's own limit is similar): a file that
// includes itself is refused rather than read forever.
const MaxIncludeDepth = 8

// MaxLine bounds a line after parameter expansion (parameters that double each other would
// otherwise grow without end).
const MaxLine = 64 << 10

// ErrSyntax is wrapped by every error about the input's grammar.
var ErrSyntax = errors.New("keepalived: syntax error")

// Pos is where a statement starts: a file and a 1-based line.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return fmt.Sprintf("%s:%d", p.File, p.Line) }

// SyntaxError is a grammar error at a position.
type SyntaxError struct {
	Pos Pos
	Msg string
}

func (e *SyntaxError) Error() string { return e.Pos.String() + ": " + e.Msg }

// Unwrap makes errors.Is(err, ErrSyntax) hold.
func (e *SyntaxError) Unwrap() error { return ErrSyntax }

// Node is one statement: a keyword, its arguments and, for a block, the statements inside
// its braces.
type Node struct {
	Name     string
	Args     []string
	Pos      Pos
	Block    bool
	Children []*Node
}

// Arg returns argument i, or "".
func (n *Node) Arg(i int) string {
	if i < len(n.Args) {
		return n.Args[i]
	}
	return ""
}

// token is one word of the input: a keyword, an argument, "{", "}" or a line end.
type token struct {
	text   string
	quoted bool // a quoted string: never a brace, never a comment
	eol    bool
	pos    Pos
}

func (t token) is(s string) bool { return !t.quoted && !t.eol && t.text == s }

// lex splits src into tokens: words separated by white space, "{" and "}" even when glued to
// a word, double-quoted strings (the quotes removed; \" and \\ escaped), and comments from an
// unquoted '#' or '!' to the end of the line. A line "$NAME=value" defines a parameter (in
// vars, shared with the included files) and $NAME or ${NAME} on later lines is replaced by
// its value, as keepalived does; an undefined one stays as written.
func lex(file string, src []byte, vars map[string]string) ([]token, error) {
	var toks []token
	for i, line := range strings.Split(string(src), "\n") {
		pos := Pos{file, i + 1}
		line = strings.TrimSuffix(line, "\r")
		if !utf8.ValidString(line) {
			return nil, &SyntaxError{pos, "not valid UTF-8 text"}
		}
		if name, value, ok := paramDef(line); ok {
			if vars[name], ok = expand(value, vars); !ok {
				return nil, &SyntaxError{pos, fmt.Sprintf("parameter $%s expands beyond %d bytes", name, MaxLine)}
			}
			toks = append(toks, token{eol: true, pos: pos})
			continue
		}
		var ok bool
		if line, ok = expand(line, vars); !ok {
			return nil, &SyntaxError{pos, fmt.Sprintf("line longer than %d bytes (parameters expanded)", MaxLine)}
		}
		for j := 0; j < len(line); {
			c := line[j]
			switch {
			case c == ' ' || c == '\t' || c == '\f' || c == '\v':
				j++
			case c == '#' || c == '!':
				j = len(line)
			case c == '{' || c == '}':
				toks = append(toks, token{text: string(c), pos: pos})
				j++
			case c == '"':
				s, n, ok := quoted(line[j:])
				if !ok {
					return nil, &SyntaxError{pos, "unterminated quoted string"}
				}
				toks = append(toks, token{text: s, quoted: true, pos: pos})
				j += n
			default:
				k := j
				for k < len(line) && !strings.ContainsRune(" \t\f\v{}\"#!", rune(line[k])) {
					k++
				}
				toks = append(toks, token{text: line[j:k], pos: pos})
				j = k
			}
		}
		toks = append(toks, token{eol: true, pos: pos})
	}
	return toks, nil
}

// paramRE matches a parameter definition line: $NAME=value.
var paramRE = regexp.MustCompile(`^\s*\$([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

// refRE matches a parameter reference: $NAME or ${NAME}.
var refRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

func paramDef(line string) (name, value string, ok bool) {
	m := paramRE.FindStringSubmatch(line)
	if m == nil {
		return "", "", false
	}
	return m[1], strings.TrimSpace(m[2]), true
}

// expand replaces the defined parameters in line (one pass: a value is not expanded again).
// It stops, returning false, once the result would pass MaxLine.
func expand(line string, vars map[string]string) (string, bool) {
	if len(vars) == 0 || !strings.Contains(line, "$") {
		return line, len(line) <= MaxLine
	}
	var b strings.Builder
	last := 0
	for _, m := range refRE.FindAllStringSubmatchIndex(line, -1) {
		var name string
		if m[2] >= 0 { // ${NAME}
			name = line[m[2]:m[3]]
		} else { // $NAME
			name = line[m[4]:m[5]]
		}
		v, ok := vars[name]
		if !ok {
			continue
		}
		if b.Len()+(m[0]-last)+len(v) > MaxLine {
			return "", false
		}
		b.WriteString(line[last:m[0]])
		b.WriteString(v)
		last = m[1]
	}
	if b.Len()+len(line)-last > MaxLine {
		return "", false
	}
	b.WriteString(line[last:])
	return b.String(), true
}

// quoted reads a double-quoted string at the start of s; it returns the text, the bytes used
// and whether the closing quote was found.
func quoted(s string) (string, int, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\'):
			b.WriteByte(s[i+1])
			i++
		case c == '"':
			return b.String(), i + 1, true
		default:
			b.WriteByte(c)
		}
	}
	return "", 0, false
}

// parser turns one file's tokens into statements, reading included files as it meets them.
type parser struct {
	fsys  fs.FS             // nil: the OS file system
	vars  map[string]string // keepalived's $NAME parameters, shared with included files
	toks  []token
	i     int
	depth int
	// stack is the chain of files being read, to refuse include loops.
	stack []string
}

// ParseFile reads a keepalived configuration file and the files it includes.
func ParseFile(path string) ([]*Node, error) {
	return parseFile(nil, map[string]string{}, path, nil)
}

// Parse reads a configuration from src, named file in positions; relative includes are
// resolved against file's directory in the OS file system.
func Parse(file string, src []byte) ([]*Node, error) {
	return parseSrc(nil, map[string]string{}, file, src, nil)
}

func parseFile(fsys fs.FS, vars map[string]string, path string, stack []string) ([]*Node, error) {
	src, err := readFile(fsys, path)
	if err != nil {
		return nil, err
	}
	return parseSrc(fsys, vars, path, src, stack)
}

func readFile(fsys fs.FS, path string) ([]byte, error) {
	if fsys != nil {
		return fs.ReadFile(fsys, path)
	}
	return os.ReadFile(path)
}

func parseSrc(fsys fs.FS, vars map[string]string, file string, src []byte, stack []string) ([]*Node, error) {
	toks, err := lex(file, src, vars)
	if err != nil {
		return nil, err
	}
	p := &parser{fsys: fsys, vars: vars, toks: toks, stack: append(slices.Clone(stack), filepath.Clean(file))}
	nodes, err := p.block(nil)
	if err != nil {
		return nil, err
	}
	return nodes, nil
}

// block reads statements until the "}" that closes open's block, or (open nil) the end of
// the input.
func (p *parser) block(open *Node) ([]*Node, error) {
	inner := open != nil
	var nodes []*Node
	for {
		for p.i < len(p.toks) && p.toks[p.i].eol {
			p.i++
		}
		if p.i == len(p.toks) {
			if inner {
				return nil, &SyntaxError{open.Pos, fmt.Sprintf("missing }: the block of %s is not closed before the end of the file", open.Name)}
			}
			return nodes, nil
		}
		t := p.toks[p.i]
		switch {
		case t.is("}"):
			if !inner {
				return nil, &SyntaxError{t.pos, "unexpected }: no block is open"}
			}
			p.i++
			return nodes, nil
		case t.is("{"):
			return nil, &SyntaxError{t.pos, "{ without a keyword before it"}
		}
		n, err := p.statement()
		if err != nil {
			return nil, err
		}
		if n.Name == "include" && !n.Block {
			inc, err := p.include(n)
			if err != nil {
				return nil, err
			}
			nodes = append(nodes, inc...)
			continue
		}
		nodes = append(nodes, n)
	}
}

// statement reads a keyword, its arguments up to the line end, a "{" or a "}", and the block
// that follows (its "{" may be on the next line).
func (p *parser) statement() (*Node, error) {
	t := p.toks[p.i]
	n := &Node{Name: t.text, Pos: t.pos}
	p.i++
	for p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.eol || t.is("{") || t.is("}") {
			break
		}
		n.Args = append(n.Args, t.text)
		p.i++
	}
	// A "{" on this line or alone at the start of the next one opens this statement's block.
	j := p.i
	if j < len(p.toks) && p.toks[j].eol {
		j++
		for j < len(p.toks) && p.toks[j].eol {
			j++
		}
		if j == len(p.toks) || !p.toks[j].is("{") {
			return n, nil
		}
	}
	if j < len(p.toks) && p.toks[j].is("{") {
		p.i = j + 1
		children, err := p.block(n)
		if err != nil {
			return nil, err
		}
		n.Block, n.Children = true, children
	}
	return n, nil
}

// include reads the files an include statement names (a glob, relative to the including
// file's directory): a pattern that matches nothing is no error (keepalived's behaviour, so
// an empty conf.d works), a malformed one is.
func (p *parser) include(n *Node) ([]*Node, error) {
	if len(n.Args) != 1 {
		return nil, &SyntaxError{n.Pos, "include takes one path (a glob)"}
	}
	if len(p.stack) > MaxIncludeDepth {
		return nil, &SyntaxError{n.Pos, fmt.Sprintf("includes nested deeper than %d", MaxIncludeDepth)}
	}
	pattern := n.Args[0]
	if !filepath.IsAbs(pattern) {
		pattern = filepath.Join(filepath.Dir(n.Pos.File), pattern)
	}
	var matches []string
	var err error
	if p.fsys != nil {
		matches, err = fs.Glob(p.fsys, strings.TrimPrefix(pattern, "/"))
	} else {
		matches, err = filepath.Glob(pattern)
	}
	if err != nil {
		return nil, &SyntaxError{n.Pos, fmt.Sprintf("include %q: %v", n.Args[0], err)}
	}
	slices.Sort(matches)
	var out []*Node
	for _, m := range matches {
		if slices.Contains(p.stack, filepath.Clean(m)) {
			return nil, &SyntaxError{n.Pos, fmt.Sprintf("include %q: %s includes itself", n.Args[0], m)}
		}
		nodes, err := parseFile(p.fsys, p.vars, m, p.stack)
		if err != nil {
			var se *SyntaxError
			if errors.As(err, &se) {
				return nil, err
			}
			return nil, &SyntaxError{n.Pos, fmt.Sprintf("include %s: %v", m, err)}
		}
		out = append(out, nodes...)
	}
	return out, nil
}
