package bench

import (
	"os"
	"testing"
	"time"
)

// TestSampleTreeSelf: our own CPU time grows as we burn CPU, measured
// finer than a clock tick when the kernel allows, and RSS is sensible.
func TestSampleTreeSelf(t *testing.T) {
	c0, rss, procs, err := sampleTree(os.Getpid())
	if err != nil || procs < 1 || rss < 1000 {
		t.Fatalf("cpu %v rss %d procs %d err %v", c0, rss, procs, err)
	}
	// Burn CPU until the sample has grown by 30 ms; on a busy machine
	// that may take longer in wall time, so the bound is generous.
	deadline := time.Now().Add(20 * time.Second)
	x := 0
	for time.Now().Before(deadline) {
		for i := 0; i < 1e6; i++ {
			x += i
		}
		c1, _, _, _ := sampleTree(os.Getpid())
		if c1-c0 >= 0.03 {
			return
		}
	}
	t.Errorf("CPU time sampled did not grow by 30ms in 20s of spinning (%d)", x)
	if _, _, _, err := sampleTree(1 << 30); err == nil {
		t.Error("a missing pid sampled")
	}
}

func TestParseCPUInfo(t *testing.T) {
	for _, tc := range []struct{ info, want string }{
		{"processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel\t\t: 1\nmodel name\t: AMD EPYC 7B13\n", "AMD EPYC 7B13"},
		// Raspberry Pi 3, 32-bit kernel: the board, not the core.
		{"processor\t: 0\nmodel name\t: ARMv7 Processor rev 4 (v7l)\nCPU part\t: 0xd03\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n", "Raspberry Pi 3 Model B Rev 1.2"},
		// arm64 without a board line: the CPU part.
		{"processor\t: 0\nCPU implementer\t: 0x41\nCPU part\t: 0xd08\n", "0xd08"},
		{"", ""},
	} {
		if got := parseCPUInfo(tc.info); got != tc.want {
			t.Errorf("parseCPUInfo = %q, want %q", got, tc.want)
		}
	}
}
