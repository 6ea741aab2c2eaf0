import type { Command } from 'commander';

/** Every command path with its options, from the program itself (so completion never lags behind the CLI). */
function walk(
  cmd: Command,
  prefix: string[] = [],
): { path: string[]; subcommands: string[]; options: string[] }[] {
  const here = {
    path: prefix,
    subcommands: cmd.commands.map((c) => c.name()),
    options: cmd.options.flatMap((o) => [o.long, o.short].filter((x): x is string => !!x)),
  };
  return [here, ...cmd.commands.flatMap((c) => walk(c, [...prefix, c.name()]))];
}

/**
 * `parley completion bash|zsh`: completes commands, subcommands and options
 * (the global ones everywhere). Generated from the commander program.
 */
export function completionScript(program: Command, shell: 'bash' | 'zsh'): string {
  const nodes = walk(program);
  const globals = nodes[0].options.join(' ');
  const cases = nodes
    .map(
      (n) =>
        `    "${n.path.join(' ')}") words="${[...n.subcommands, ...(n.path.length ? n.options : [])].join(' ')} ${globals}" ;;`,
    )
    .join('\n');
  const body = `_parley() {
  local cur path="" w i
  cur="\${COMP_WORDS[COMP_CWORD]}"
  # the command path: the words so far that are commands, not options or their values
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    case "$w" in -*) continue ;; esac
    case " $(_parley_words "$path") " in *" $w "*) path="\${path:+$path }$w" ;; esac
  done
  COMPREPLY=($(compgen -W "$(_parley_words "$path")" -- "$cur"))
  case "$cur" in -*) ;; *) [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur")) ;; esac
}
_parley_words() {
  local words=""
  case "$1" in
${cases}
  esac
  echo "$words"
}
`;
  if (shell === 'bash')
    return `# bash completion for parley (parley completion bash)\n${body}complete -F _parley parley\n`;
  return `#compdef parley
# zsh completion for parley (parley completion zsh > "\${fpath[1]}/_parley")
autoload -U +X bashcompinit && bashcompinit
${body}complete -F _parley parley
`;
}
