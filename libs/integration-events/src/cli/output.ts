/** Prints a command's result as text, or as JSON with `--json`. */
export class Output {
  constructor(private readonly json: boolean) {}

  result(value: unknown, text: () => string[]): void {
    process.stdout.write(this.json ? `${JSON.stringify(value, null, 2)}\n` : `${text().join('\n')}\n`);
  }
}
