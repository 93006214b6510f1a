package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/sockbench/sockbench/protocol"
)

// Issue 12, item 7: what load reports when a run fails before or without
// a valid reply. These tests use nothing newer than the Report's counters
// and its text and JSON forms, so they also ran against the code before
// the fix (where they fail).

// TestWarmupFailureIsReported: the server goes away during the warmup.
// The report must not say "Errors none" above FAILED: it counts what the
// warmup did and says the failure came during the warmup.
func TestWarmupFailureIsReported(t *testing.T) {
	eachEngine(t, func(t *testing.T, engine string) {
		srv := &streamServer{mode: protocol.Echo}
		target := startStream(t, "tcp", srv)
		time.AfterFunc(200*time.Millisecond, srv.dropAll)
		rep, err := Run(context.Background(), withEngine(Config{Target: target, Conns: 2, Duration: time.Second,
			Warmup: scaled(5 * time.Second)}, engine))
		if !errors.Is(err, ErrFailed) || rep == nil {
			t.Fatalf("err = %v, want ErrFailed with a report", err)
		}
		var text bytes.Buffer
		if err := WriteText(&text, rep); err != nil {
			t.Fatal(err)
		}
		out := text.String()
		t.Logf("\n%s", out)
		if strings.Contains(out, "none (every reply checked") {
			t.Errorf("a failed run says every reply was checked and none failed:\n%s", out)
		}
		if !strings.Contains(out, "Warmup") || !strings.Contains(out, "during the warmup") {
			t.Errorf("the text does not say what happened in the warmup:\n%s", out)
		}
		var js bytes.Buffer
		if err := WriteJSON(&js, rep); err != nil {
			t.Fatal(err)
		}
		var m struct {
			Warmup struct {
				Requests     int64            `json:"requests"`
				Errors       int64            `json:"errors"`
				ErrorsByKind map[string]int64 `json:"errors_by_kind"`
			} `json:"warmup"`
		}
		if err := json.Unmarshal(js.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		if m.Warmup.Requests == 0 || m.Warmup.ErrorsByKind["closed"]+m.Warmup.ErrorsByKind["reset"] == 0 {
			t.Errorf("JSON warmup = %+v, want the warmup's replies and its closed or reset connections", m.Warmup)
		}
	})
}

// TestUDPGarbageIsMismatch: a UDP server that answers every datagram with
// bytes that are no reply at all is reported as mismatches, by the probe
// (not "no reply within ...") and by the run (not as datagrams lost).
func TestUDPGarbageIsMismatch(t *testing.T) {
	for _, c := range []struct {
		name       string
		garbleFrom int
	}{{"every reply", 1}, {"after the probe", 2}} {
		t.Run(c.name, func(t *testing.T) {
			eachEngine(t, func(t *testing.T, engine string) {
				target := startUDP(t, &udpServer{mode: protocol.Echo, garbleFrom: c.garbleFrom})
				rep, err := Run(context.Background(), withEngine(Config{Target: target, Conns: 1, Pipeline: 1, SizeMin: 32,
					Requests: 200, Timeout: 500 * time.Millisecond}, engine))
				if errors.Is(err, ErrUnreachable) || rep == nil {
					t.Fatalf("err = %v: a server that answers is reachable", err)
				}
				if rep.Mismatches != 200 || rep.ErrorsByKind["mismatch"] != 200 || rep.Lost != 0 || rep.Requests != 0 {
					t.Fatalf("mismatches %d (by kind %v), lost %d, requests %d; want 200 mismatches and nothing lost",
						rep.Mismatches, rep.ErrorsByKind, rep.Lost, rep.Requests)
				}
				if strings.Contains(rep.Failure, "no reply") || len(rep.Examples) == 0 {
					t.Fatalf("failure %q, examples %q", rep.Failure, rep.Examples)
				}
			})
		})
	}
}
