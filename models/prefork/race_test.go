//go:build race

package prefork

// raceEnabled reports whether the test binary was built with -race.
const raceEnabled = true
