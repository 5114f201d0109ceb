package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/iot-rollout/rollout/engine"
	"golang.org/x/term"
)

// watchStatus follows rollout o.name from its state alone, reading it every o.interval through
// readStatus (as status does, so it works on any state backend and never writes), and shows it when
// it changed: redrawn in place on a terminal, else one block (or, with --output json, one line) per
// change. It returns when the rollout ends, with apply's exit code for its end: 0 done, 2 halted,
// 3 rolled back; 1 for an unknown rollout, 4 when the state cannot be read, 130 on Ctrl-C.
func watchStatus(e *env, o *statusOptions) int {
	ctx, stop, release := interrupts(context.Background(), e)
	defer release()
	f, _ := e.stdout.(*os.File)
	tty := o.output == "text" && f != nil && term.IsTerminal(int(f.Fd()))
	h := newHints(o.dir, "")
	var last []byte
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		v, err := readStatus(e, o.dir, o.name)
		switch {
		case errors.Is(err, engine.ErrNoState):
			fmt.Fprintf(e.stderr, "rollout status: no rollout %q under %s\n", o.name, o.dir)
			return exitInvalid
		case err != nil:
			fmt.Fprintln(e.stderr, "rollout status:", err)
			return exitHub
		}
		frame := renderWatch(v, o.output, h)
		if !bytes.Equal(frame, last) {
			switch {
			case tty:
				fmt.Fprint(e.stdout, "\x1b[H\x1b[2J")
			case o.output == "text" && last != nil:
				fmt.Fprintln(e.stdout)
			}
			_, _ = e.stdout.Write(frame)
			last = frame
		}
		if code, over := watchEnded(v); over {
			return code
		}
		select {
		case <-stop:
			return exitInterrupted
		case <-ctx.Done():
			return exitInterrupted
		case <-tick.C:
		}
	}
}

// renderWatch is one frame of --watch: the status block, or the state as one JSON line.
func renderWatch(v statusView, output string, h hints) []byte {
	var buf bytes.Buffer
	if output == "json" {
		_ = json.NewEncoder(&buf).Encode(v.State)
		return buf.Bytes()
	}
	writeStatus(&buf, v, h)
	return buf.Bytes()
}

// watchEnded says whether the rollout is over, and the exit code of its end.
func watchEnded(v statusView) (code int, over bool) {
	switch v.Status {
	case engine.StatusDone:
		return exitOK, true
	case engine.StatusHalted:
		return exitHalted, true
	case engine.StatusRolledBack:
		return exitRolledBack, true
	}
	return 0, false
}
