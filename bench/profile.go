// Package bench is the sockbench orchestrator: it expands a profile into a
// matrix of cells, runs each cell as a real `sockbench serve` process
// driven by a `sockbench load` process, samples the server's CPU time and
// memory from the OS, and writes the runs as CSV, Go benchmark format and
// an HTML report. It also compares two result sets (Compare) and draws
// reports (Report).
//
// bench never links the models or the load generator: it drives both as
// separate processes of the sockbench binary, so what it measures is what a
// user would run.
package bench

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockbench/sockbench/loadgen"
	"github.com/sockbench/sockbench/protocol"
)

//go:embed profiles/*.yaml
var profileFS embed.FS

// Defaults for profile fields left empty.
const (
	DefaultDuration = 1 * time.Second
	DefaultWarmup   = 200 * time.Millisecond
	DefaultCount    = 5
	DefaultPipeline = 1
	DefaultSize     = 64
	DefaultGrace    = 5 * time.Second
)

// Profile is a benchmark plan: a matrix of cells and how long to run each.
// Groups are expanded one after another; each group is the cross product
// of its lists, so a profile can mix, say, a broad closed-loop sweep with a
// few --work cells without running every combination.
type Profile struct {
	// Name is the profile's name (the file name without .yaml).
	Name string `yaml:"name"`
	// Description says what the profile is for.
	Description string `yaml:"description"`
	// Count is how many times each cell is measured (--count overrides).
	Count int `yaml:"count"`
	// Duration is the measured window of one run.
	Duration time.Duration `yaml:"duration"`
	// Warmup is an unmeasured load run before each measured one.
	Warmup time.Duration `yaml:"warmup"`
	// Timeout is the load generator's per-request timeout (0: its default).
	Timeout time.Duration `yaml:"timeout"`
	// Grace is the server's shutdown grace (--grace).
	Grace time.Duration `yaml:"grace"`
	// ServerHost, when set, runs every server on another machine over
	// ssh: ssh://[user@]host[:port] (bench --server-host overrides it).
	ServerHost string `yaml:"server_host"`
	// Matrix lists the cell groups.
	Matrix []Group `yaml:"matrix"`
}

// Group is one cross product of cell parameters. An empty list means the
// default (one value). Rates of 0 mean closed loop.
type Group struct {
	Models    []string        `yaml:"models"`
	Nets      []string        `yaml:"nets"`
	Modes     []string        `yaml:"modes"`
	Conns     []int           `yaml:"conns"`
	Pipelines []int           `yaml:"pipeline"`
	Sizes     []Size          `yaml:"sizes"`
	Rates     []float64       `yaml:"rates"`
	Work      []time.Duration `yaml:"work"`
	Block     []time.Duration `yaml:"block"`
	// Duration and Warmup override the profile's for this group.
	Duration time.Duration `yaml:"duration"`
	Warmup   time.Duration `yaml:"warmup"`
}

// Size is a request size in bytes, '\n' included for stream transports.
// In YAML it is an integer or a string with a unit, in protocol.ParseSize's
// grammar: 512, "4KiB", "64KiB".
type Size protocol.Size

// UnmarshalYAML reads a size with protocol.ParseSize, naming the line.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := protocol.ParseSize(n.Value)
	if err != nil {
		return fmt.Errorf("bench: line %d: %w", n.Line, err)
	}
	*s = Size(v)
	return nil
}

// Cell is one point of the matrix: everything that identifies a workload.
type Cell struct {
	Model    string
	Net      string
	Mode     string
	Conns    int
	Pipeline int
	Size     int
	Rate     float64 // requests per second in total; 0 = closed loop
	Work     time.Duration
	Block    time.Duration
	Duration time.Duration
	Warmup   time.Duration
}

// Key identifies the workload of a cell, independent of how long it ran:
// it is what Compare groups runs by.
func (c Cell) Key() Key {
	return Key{c.Model, c.Net, c.Mode, c.Conns, c.Pipeline, c.Size, c.Rate,
		c.Work.Microseconds(), c.Block.Microseconds()}
}

// String names the cell for humans and progress lines.
func (c Cell) String() string { return c.Key().String() }

// Key is a cell's identity as it appears in the results CSV.
type Key struct {
	Model    string
	Net      string
	Mode     string
	Conns    int
	Pipeline int
	Size     int
	Rate     float64
	WorkUS   int64
	BlockUS  int64
}

// String is the key as a benchmark name: Echo/model=threaded/net=tcp/...
// Rate, work and block appear only when set, so closed-loop names stay short.
func (k Key) String() string {
	var b strings.Builder
	mode := k.Mode
	if mode != "" {
		mode = strings.ToUpper(mode[:1]) + mode[1:]
	}
	fmt.Fprintf(&b, "%s/model=%s/net=%s/conns=%d/pipeline=%d/size=%d", mode, k.Model, k.Net, k.Conns, k.Pipeline, k.Size)
	if k.Rate > 0 {
		fmt.Fprintf(&b, "/rate=%s", strconv.FormatFloat(k.Rate, 'f', -1, 64))
	}
	if k.WorkUS > 0 {
		fmt.Fprintf(&b, "/work=%dus", k.WorkUS)
	}
	if k.BlockUS > 0 {
		fmt.Fprintf(&b, "/block=%dus", k.BlockUS)
	}
	return b.String()
}

// Less orders keys for stable tables: model, net, mode, then numbers.
func (k Key) Less(o Key) bool {
	if k.Model != o.Model {
		return k.Model < o.Model
	}
	if k.Net != o.Net {
		return k.Net < o.Net
	}
	if k.Mode != o.Mode {
		return k.Mode < o.Mode
	}
	if k.Conns != o.Conns {
		return k.Conns < o.Conns
	}
	if k.Pipeline != o.Pipeline {
		return k.Pipeline < o.Pipeline
	}
	if k.Size != o.Size {
		return k.Size < o.Size
	}
	if k.Rate != o.Rate {
		return k.Rate < o.Rate
	}
	if k.WorkUS != o.WorkUS {
		return k.WorkUS < o.WorkUS
	}
	return k.BlockUS < o.BlockUS
}

// ProfileNames lists the built-in profiles.
func ProfileNames() []string {
	ents, _ := fs.ReadDir(profileFS, "profiles")
	var names []string
	for _, e := range ents {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// LoadProfile returns a built-in profile by name ("quick"), or reads a
// YAML file when nameOrPath contains a slash or ends in .yaml/.yml.
func LoadProfile(nameOrPath string) (*Profile, error) {
	var data []byte
	var err error
	name := nameOrPath
	if strings.ContainsRune(nameOrPath, '/') || strings.HasSuffix(nameOrPath, ".yaml") || strings.HasSuffix(nameOrPath, ".yml") {
		data, err = os.ReadFile(nameOrPath)
		if err != nil {
			return nil, fmt.Errorf("bench: profile: %w", err)
		}
		name = strings.TrimSuffix(strings.TrimSuffix(path.Base(nameOrPath), ".yaml"), ".yml")
	} else {
		data, err = profileFS.ReadFile("profiles/" + nameOrPath + ".yaml")
		if err != nil {
			return nil, fmt.Errorf("bench: no profile %q (built in: %s; or give a path to a .yaml file)",
				nameOrPath, strings.Join(ProfileNames(), ", "))
		}
	}
	return ParseProfile(name, data)
}

// ParseProfile decodes a profile, rejecting unknown fields, and checks it.
func ParseProfile(name string, data []byte) (*Profile, error) {
	var p Profile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("bench: profile %s: %w", name, err)
	}
	if p.Name == "" {
		p.Name = name
	}
	if p.Count == 0 {
		p.Count = DefaultCount
	}
	if p.Duration == 0 {
		p.Duration = DefaultDuration
	}
	if p.Warmup == 0 {
		p.Warmup = DefaultWarmup
	}
	if p.Grace == 0 {
		p.Grace = DefaultGrace
	}
	if p.Count < 0 || p.Duration < 0 || p.Warmup < 0 || p.Timeout < 0 || p.Grace < 0 {
		return nil, fmt.Errorf("bench: profile %s: count, duration, warmup, timeout and grace must not be negative", p.Name)
	}
	if len(p.Matrix) == 0 {
		return nil, fmt.Errorf("bench: profile %s: empty matrix", p.Name)
	}
	if p.ServerHost != "" {
		if _, err := ParseServerHost(p.ServerHost); err != nil {
			return nil, fmt.Errorf("bench: profile %s: server_host: %w", p.Name, err)
		}
	}
	if _, err := p.Cells(); err != nil {
		return nil, err
	}
	return &p, nil
}

// Cells expands the matrix in file order, dropping exact duplicates.
func (p *Profile) Cells() ([]Cell, error) {
	var cells []Cell
	seen := map[Key]bool{}
	for gi, g := range p.Matrix {
		where := fmt.Sprintf("bench: profile %s, matrix group %d", p.Name, gi+1)
		models := orDefault(g.Models, "threaded")
		nets := orDefault(g.Nets, "tcp")
		modes := orDefault(g.Modes, "echo")
		conns := orDefault(g.Conns, 1)
		pipes := orDefault(g.Pipelines, DefaultPipeline)
		sizes := orDefault(g.Sizes, DefaultSize)
		rates := orDefault(g.Rates, 0)
		works := orDefault(g.Work, 0)
		blocks := orDefault(g.Block, 0)
		dur, warm := p.Duration, p.Warmup
		if g.Duration > 0 {
			dur = g.Duration
		}
		if g.Warmup > 0 {
			warm = g.Warmup
		}
		for _, n := range nets {
			if _, err := protocol.ParseTransport(n); err != nil {
				return nil, fmt.Errorf("%s: unknown net %q (want %s)", where, n, protocol.TransportsWanted)
			}
		}
		for _, m := range modes {
			if m != "echo" && m != "upper" {
				return nil, fmt.Errorf("%s: unknown mode %q (want echo or upper)", where, m)
			}
		}
		for _, m := range models {
			if m == "" || strings.ContainsAny(m, " /") {
				return nil, fmt.Errorf("%s: bad model name %q", where, m)
			}
		}
		for _, c := range conns {
			if c < 1 {
				return nil, fmt.Errorf("%s: conns must be at least 1, not %d", where, c)
			}
		}
		for _, pp := range pipes {
			if pp < 1 {
				return nil, fmt.Errorf("%s: pipeline must be at least 1, not %d", where, pp)
			}
		}
		for _, r := range rates {
			if r < 0 {
				return nil, fmt.Errorf("%s: rate must not be negative", where)
			}
		}
		for _, d := range append(append([]time.Duration{}, works...), blocks...) {
			if d < 0 {
				return nil, fmt.Errorf("%s: work and block must not be negative", where)
			}
		}
		for _, model := range models {
			for _, net := range nets {
				for _, mode := range modes {
					for _, c := range conns {
						for _, pp := range pipes {
							for _, s := range sizes {
								for _, r := range rates {
									for _, w := range works {
										for _, b := range blocks {
											cell := Cell{Model: model, Net: net, Mode: mode, Conns: c, Pipeline: pp,
												Size: int(s), Rate: r, Work: w, Block: b, Duration: dur, Warmup: warm}
											if seen[cell.Key()] {
												continue
											}
											if err := checkShape(cell); err != nil {
												return nil, fmt.Errorf("%s: cell %s: %v", where, cell, err)
											}
											seen[cell.Key()] = true
											cells = append(cells, cell)
										}
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if len(cells) == 0 {
		return nil, errors.New("bench: profile " + p.Name + " has no cells")
	}
	return cells, nil
}

// checkShape checks that the load generator can drive a cell's shape of
// load, by the rules it applies itself (loadgen.Config.Normalize): a
// datagram no shorter than its sequence tag nor longer than a datagram
// can be, a line within the server's default --max-line, connections
// times pipeline within what it keeps in flight. A profile that asks
// for more is refused when it is read, not cell by cell minutes later.
func checkShape(c Cell) error {
	tr, err := protocol.ParseTransport(c.Net)
	if err != nil {
		return err
	}
	target := c.Net + "://" + tr.Loopback("1")
	if tr.IsUnix() {
		target = c.Net + ":///tmp/sockbench-check.sock"
	}
	mode, err := protocol.ParseMode(c.Mode)
	if err != nil {
		return err
	}
	cfg := loadgen.Config{Target: target, Mode: mode, Conns: c.Conns, Pipeline: c.Pipeline,
		SizeMin: c.Size, SizeMax: c.Size, Rate: c.Rate, Duration: max(c.Duration, time.Millisecond)}
	if err := cfg.Normalize(); err != nil {
		msg := err.Error()
		if p, ok := strings.CutPrefix(msg, loadgen.ErrConfig.Error()+": "); ok {
			msg = p
		}
		return errors.New(msg)
	}
	return nil
}

// CheckModels checks that every model the profile names is one of known
// (the models the sockbench binary serves), suggesting the nearest name
// for a misspelt one.
func (p *Profile) CheckModels(known []string) error {
	for gi, g := range p.Matrix {
		for _, m := range orDefault(g.Models, "threaded") {
			if slices.Contains(known, m) {
				continue
			}
			hint := ""
			if near := nearest(m, known); near != "" {
				hint = fmt.Sprintf("; did you mean %s?", near)
			}
			return fmt.Errorf("bench: profile %s, matrix group %d: unknown model %q (want one of: %s)%s",
				p.Name, gi+1, m, strings.Join(known, ", "), hint)
		}
	}
	return nil
}

// nearest is the name in names within two edits of s, or "".
func nearest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := editDistance(strings.ToLower(s), n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func orDefault[T any](v []T, def T) []T {
	if len(v) == 0 {
		return []T{def}
	}
	return v
}
