/**
 * Parsers of command-line option values shared by the commands.
 */
import { InvalidArgumentError } from 'commander';

/** A commander parser for a whole-number option in [min, max]; the error names the option and the range. */
export function integerOption(name: string, min: number, max: number): (text: string) => number {
  return (text) => {
    const value = Number(text);
    if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`${name} must be a whole number from ${min} to ${max}.`);
    }
    return value;
  };
}
