package main

import (
	"strings"

	"github.com/spf13/cobra"

	"github.com/sockbench/sockbench/protocol"
)

// completeValues makes the shell complete flag name of cmd with the values
// list returns (cobra's completion command writes the scripts: sockbench
// completion bash|zsh|fish|powershell). dir says what the shell does past
// them: nothing for a closed set, file names where a path is allowed too.
func completeValues(cmd *cobra.Command, name string, list func() []string, dir cobra.ShellCompDirective) {
	err := cmd.RegisterFlagCompletionFunc(name, func(_ *cobra.Command, _ []string, prefix string) ([]string, cobra.ShellCompDirective) {
		var out []string
		for _, v := range list() {
			if strings.HasPrefix(v, prefix) {
				out = append(out, v)
			}
		}
		return out, dir
	})
	if err != nil {
		panic("sockbench: completion for --" + name + ": " + err.Error()) // a flag name typed wrong here
	}
}

// modeNames are the modes, for completion.
func modeNames() []string {
	var names []string
	for _, m := range protocol.Modes {
		names = append(names, m.String())
	}
	return names
}

// targetSchemes are the beginnings of a load target: tcp://, udp://, ...
func targetSchemes() []string {
	var out []string
	for _, n := range protocol.TransportNames() {
		out = append(out, n+"://")
	}
	return out
}
