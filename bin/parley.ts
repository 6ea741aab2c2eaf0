// The `parley` command line: the program and its global flags are in bin/cli/program.ts, each command
// group in a file of its own in bin/cli/ (registered here in the order `--help` lists them).
import { completionScript } from './completion.ts';
import { registerDataCommands } from './cli/data.ts';
import { registerNodeCommands } from './cli/node.ts';
import { registerOpsCommands } from './cli/ops.ts';
import { action, program } from './cli/program.ts';
import { registerRoomCommands } from './cli/rooms.ts';
import { registerUserCommands } from './cli/users.ts';

registerNodeCommands();
registerUserCommands();
registerOpsCommands();
registerDataCommands();

program
  .command('completion <shell>')
  .description(
    'print a completion script: bash (source it, or put it in /etc/bash_completion.d/parley) or zsh (put it as _parley in $fpath)',
  )
  .action(
    action((shell: string) => {
      if (shell !== 'bash' && shell !== 'zsh') throw new Error('completion: bash or zsh');
      process.stdout.write(completionScript(program, shell));
    }),
  );

program.option(
  '--json',
  'machine-readable output: the result as JSON on stdout; errors as {"ok":false,"error","code"}',
);

registerRoomCommands();

await program.parseAsync(process.argv);
