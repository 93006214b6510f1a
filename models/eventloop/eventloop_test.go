package eventloop

import (
	"os"
	"testing"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestConformance runs the whole shared suite against this model.
func TestConformance(t *testing.T) {
	modeltest.Run(t, Name)
}
