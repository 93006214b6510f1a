package bare_test

import (
	"os"
	"testing"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/bare"
	"github.com/sockbench/sockbench/models/modeltest"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestConformance runs the shared suite on every transport bare serves,
// unixgram included; nothing is skipped.
func TestConformance(t *testing.T) {
	modeltest.Run(t, bare.Name, modeltest.Nets("tcp", "udp", "unix", "unixgram"))
}
