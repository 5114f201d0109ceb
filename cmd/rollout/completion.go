package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newCompletionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "completion bash|zsh|fish|powershell",
		Short: "print a shell completion script (bash, zsh, fish, powershell)",
		Long: "Prints the completion script for a shell. It completes commands and flags, and rollout names and\n" +
			"wave names from the state that --state (or ROLLOUT_STATE) names.",
		Example: examples(
			"source <(rollout completion bash)",
			"rollout completion zsh > \"${fpath[1]}/_rollout\"",
			"rollout completion fish > ~/.config/fish/completions/rollout.fish"),
		ValidArgs: []string{"bash", "zsh", "fish", "powershell"},
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("give exactly one shell: bash, zsh, fish or powershell")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			var err error
			switch args[0] {
			case "bash":
				err = root.GenBashCompletionV2(e.stdout, true)
			case "zsh":
				err = root.GenZshCompletion(e.stdout)
			case "fish":
				err = root.GenFishCompletion(e.stdout, true)
			case "powershell":
				err = root.GenPowerShellCompletionWithDesc(e.stdout)
			default:
				return usagef("unknown shell %q: want bash, zsh, fish or powershell", args[0])
			}
			if err != nil {
				fmt.Fprintln(e.stderr, "rollout completion:", err)
				return exitWith(exitInvalid)
			}
			return nil
		},
	}
}

// listRollouts lists the rollouts that have state where a --state value says. It is the one place
// completion reads what rollouts there are, so that another state backend plugs in here.
var listRollouts = func(e *env, state string) ([]string, error) {
	b, err := stateBackend(e, state)
	if err != nil {
		return nil, err
	}
	return b.Names(context.Background())
}

// listWaves lists the waves of rollout name where a --state value says, from its recorded state.
var listWaves = func(e *env, state, name string) ([]string, error) {
	store, err := openState(e, state, name)
	if err != nil || !hasState(store) {
		return nil, err
	}
	st, err := store.Load()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(st.Waves))
	for _, w := range st.Waves {
		names = append(names, w.Name)
	}
	return names, nil
}

// completionState is the state a completion reads: --state when the command line has it, else its
// default.
func completionState(cmd *cobra.Command, e *env) string {
	if f := cmd.Flags().Lookup("state"); f != nil {
		return f.Value.String()
	}
	return defaultStateDir(e)
}

// completeRollouts completes a command's one rollout name argument.
func completeRollouts(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := listRollouts(e, completionState(cmd, e))
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return matching(names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeWaves completes --wave with the waves of the rollout named by the first argument.
func completeWaves(e *env) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) == 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		names, err := listWaves(e, completionState(cmd, e), args[0])
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return matching(names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// matching keeps the names that start with prefix.
func matching(names []string, prefix string) []cobra.Completion {
	var out []cobra.Completion
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}
