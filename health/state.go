package health

import "fmt"

// tracker is one check's rise/fall state machine. It is a pure function of the sequence of
// probe outcomes, kept apart from timers so it can be tested exactly.
type tracker struct {
	state      State
	rise, fall int
	okRun      int // consecutive successes so far
	failRun    int // consecutive failures so far
}

// observe records one outcome and reports whether the state changed, with the reason.
// Unknown moves on the first outcome; Up goes Down after fall consecutive failures; Down goes
// Up after rise consecutive successes. errText is the failing probe's error.
func (t *tracker) observe(ok bool, errText string) (changed bool, reason string) {
	if ok {
		t.okRun++
		t.failRun = 0
	} else {
		t.failRun++
		t.okRun = 0
	}
	switch {
	case t.state == StateUnknown && ok:
		t.state = StateUp
		return true, "first probe succeeded"
	case t.state == StateUnknown:
		t.state = StateDown
		return true, "first probe failed: " + errText
	case t.state == StateUp && !ok && t.failRun >= t.fall:
		t.state = StateDown
		return true, fmt.Sprintf("%d consecutive failures, last: %s", t.failRun, errText)
	case t.state == StateDown && ok && t.okRun >= t.rise:
		t.state = StateUp
		return true, fmt.Sprintf("%d consecutive successes", t.okRun)
	}
	return false, ""
}

// Combine is the state of a target probed by several checks (keepalived's several checkers
// per real server): up only when every check is up, down as soon as one is down, unknown
// otherwise (and for no checks at all).
func Combine(states ...State) State {
	if len(states) == 0 {
		return StateUnknown
	}
	all := StateUp
	for _, s := range states {
		switch s {
		case StateDown:
			return StateDown
		case StateUp:
		default:
			all = StateUnknown
		}
	}
	return all
}
