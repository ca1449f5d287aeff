package bgp

import (
	"context"
	"log/slog"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// slogAdapter feeds GoBGP's log lines to a slog.Logger. GoBGP's debug
// chatter goes to slog's debug level; a Fatal or Panic from GoBGP is logged
// as an error and never ends the process.
type slogAdapter struct {
	l *slog.Logger
}

func (a slogAdapter) log(level slog.Level, msg string, fields gobgplog.Fields) {
	if !a.l.Enabled(context.Background(), level) {
		return
	}
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	a.l.Log(context.Background(), level, "gobgp: "+msg, args...)
}

func (a slogAdapter) Panic(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Fatal(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Error(msg string, f gobgplog.Fields) { a.log(slog.LevelError, msg, f) }
func (a slogAdapter) Warn(msg string, f gobgplog.Fields)  { a.log(slog.LevelWarn, msg, f) }
func (a slogAdapter) Info(msg string, f gobgplog.Fields)  { a.log(slog.LevelInfo, msg, f) }
func (a slogAdapter) Debug(msg string, f gobgplog.Fields) { a.log(slog.LevelDebug, msg, f) }

// SetLevel is ignored: the slog.Logger's handler decides what is written.
func (a slogAdapter) SetLevel(gobgplog.LogLevel) {}

// GetLevel makes GoBGP build its debug fields only when they are written.
func (a slogAdapter) GetLevel() gobgplog.LogLevel {
	if a.l.Enabled(context.Background(), slog.LevelDebug) {
		return gobgplog.DebugLevel
	}
	return gobgplog.InfoLevel
}
