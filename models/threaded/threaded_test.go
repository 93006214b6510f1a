package threaded_test

import (
	"os"
	"testing"

	"github.com/sockbench/sockbench/models"
	"github.com/sockbench/sockbench/models/modeltest"
	_ "github.com/sockbench/sockbench/models/threaded"
)

func TestMain(m *testing.M) {
	models.MaybeRunChild()
	os.Exit(m.Run())
}

// TestConformance runs the shared suite every model must pass.
func TestConformance(t *testing.T) { modeltest.Run(t, "threaded") }
