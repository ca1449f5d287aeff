package config

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel reasons of configuration errors; test with errors.Is.
var (
	ErrSyntax       = errors.New("yaml syntax")
	ErrUnknownField = errors.New("unknown field")
	ErrType         = errors.New("bad type")
	ErrValue        = errors.New("bad value")
	ErrMissing      = errors.New("missing")
	ErrDuplicate    = errors.New("duplicate")
	ErrTooBig       = errors.New("document too large")
)

// FieldError is one configuration error: where it is and why.
type FieldError struct {
	File string // "" when the config was not read from a file
	Line int    // 0 when unknown
	Path string // e.g. services[0].backends[1].weight
	Err  error  // wraps one of the sentinel reasons
}

func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteByte(':')
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:", e.Line)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *FieldError) Unwrap() error { return e.Err }

// ConfigErrors is every error found in a configuration, in file order.
type ConfigErrors []*FieldError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As see every error.
func (es ConfigErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// errs collects FieldErrors with the file name.
type errs struct {
	file    string
	list    ConfigErrors
	dropped int
}

// maxErrors bounds the list a pathological file can produce.
const maxErrors = 100

func (e *errs) add(line int, path string, reason error, format string, args ...any) {
	if len(e.list) >= maxErrors {
		e.dropped++
		return
	}
	err := reason
	if format != "" {
		err = fmt.Errorf("%w: "+format, append([]any{reason}, args...)...)
	}
	e.list = append(e.list, &FieldError{File: e.file, Line: line, Path: path, Err: err})
}

// addAt is add for a line of another file (an ACL list file).
func (e *errs) addAt(file string, line int, path string, reason error, format string, args ...any) {
	n := len(e.list)
	e.add(line, path, reason, format, args...)
	if len(e.list) > n {
		e.list[n].File = file
	}
}

// addErr records err, a parse error of a value, as a bad value (keeping
// err in the chain for errors.Is).
func (e *errs) addErr(line int, path string, err error) {
	if !errors.Is(err, ErrValue) {
		err = fmt.Errorf("%w: %w", ErrValue, err)
	}
	if len(e.list) >= maxErrors {
		e.dropped++
		return
	}
	e.list = append(e.list, &FieldError{File: e.file, Line: line, Path: path, Err: err})
}

func (e *errs) err() error {
	if len(e.list) == 0 {
		return nil
	}
	if e.dropped > 0 {
		e.list = append(e.list, &FieldError{File: e.file, Path: "",
			Err: fmt.Errorf("%w: %d more errors not shown", ErrTooBig, e.dropped)})
		e.dropped = 0
	}
	return e.list
}
