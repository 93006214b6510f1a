// Command sockbench serves, loads, benchmarks and compares server
// concurrency models. See `sockbench --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sockbench/sockbench/models"
)

// Exit statuses shared by every subcommand.
const (
	exitOK      = 0
	exitFailure = 1 // the run failed, or compare found a regression
	exitUsage   = 2 // bad flags, arguments or addresses
)

// usageError marks an error as the user's input being wrong (exit 2).
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// usagef returns a usageError with a formatted message.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries a specific exit status with an already-printed message.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// newRootCmd builds the sockbench command tree. Every command is built the
// same way, by its newXCmd function, and nothing is shared between two
// trees: run builds a fresh one for each call (tests call it many times).
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "sockbench",
		Short: "Benchmark server concurrency models: threaded, event loop, prefork, and the machine's limit (bare)",
		Long: `sockbench runs the same echo/uppercase server written three ways (a goroutine
per connection, epoll event loops, and a pool of worker processes), and a
fourth that is the machine's limit (one readiness loop on raw sockets), drives
each with one load generator over TCP, UDP and Unix sockets, and writes results
you can compare, plot and gate CI on.`,
		SilenceUsage:               true,
		SilenceErrors:              true,
		Version:                    currentVersion().String(),
		SuggestionsMinimumDistance: 2,
		// With Args set, cobra leaves an unknown command to RunE instead of
		// returning an untyped error of its own.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			hint := ""
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				hint = fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
			}
			return usagef("unknown command %q%s (see 'sockbench --help')", args[0], hint)
		},
	}
	root.AddCommand(newServeCmd(), newLoadCmd(), newMergeCmd(), newBenchCmd(), newCompareCmd(), newReportCmd(),
		newVersionCmd(), newAgentCmd())
	root.SetVersionTemplate("{{.Version}}\n")
	root.InitDefaultCompletionCmd()
	root.SetFlagErrorFunc(flagError)
	markArgsErrors(root)
	return root
}

func main() {
	models.MaybeRunChild()
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "sockbench:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(os.Stderr, "sockbench:", err)
	var ue usageError
	if errors.As(err, &ue) {
		return exitUsage
	}
	return exitFailure
}

// flagError is every command's flag error function: whatever the flag
// parser refuses is a usage error, and a value of the wrong kind reads as
// what the flag wants ('invalid argument "abc" for "--workers" flag: want
// a whole number') instead of strconv's wording. It goes by pflag's typed
// errors and the flag's value type, never by the text of an error.
func flagError(c *cobra.Command, err error) error {
	var ive *pflag.InvalidValueError
	if errors.As(err, &ive) {
		if want := flagWants(ive.GetFlag().Value.Type(), errors.Unwrap(ive)); want != "" {
			f := ive.GetFlag()
			name := "--" + f.Name
			if f.Shorthand != "" && f.ShorthandDeprecated == "" {
				name = "-" + f.Shorthand + ", " + name
			}
			err = fmt.Errorf("invalid argument %q for %q flag: %s", ive.GetValue(), name, want)
		}
	}
	return usageError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
}

// flagWants says what a flag of pflag's value type typ takes, for a value
// its parser refused with cause; "" keeps the parser's own message (a
// flag type of ours, such as a mode, says it well already).
func flagWants(typ string, cause error) string {
	if ne := (*strconv.NumError)(nil); errors.As(cause, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
		return "out of range"
	}
	switch typ {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "want a whole number"
	case "float32", "float64":
		return "want a number"
	case "bool":
		return "want true or false"
	case "duration":
		return "want a duration with a unit, such as 500us, 10ms or 2s"
	}
	return ""
}

// markArgsErrors makes every command's argument check return a usage
// error (exit 2): cobra's own checks (cobra.NoArgs in the completion
// command, say) return untyped errors.
func markArgsErrors(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			err := check(cmd, args)
			if err != nil && !errors.As(err, new(usageError)) {
				err = usageError{fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())}
			}
			return err
		}
	}
	for _, sub := range c.Commands() {
		markArgsErrors(sub)
	}
}

// argsError wraps a cobra.PositionalArgs check so a wrong argument count
// reads as what the command needs, with where to look.
func argsError(check cobra.PositionalArgs, want string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usagef("%s needs %s, got %d argument(s) (see '%s --help')", cmd.Name(), want, len(args), cmd.CommandPath())
		}
		return nil
	}
}
