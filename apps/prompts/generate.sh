#!/usr/bin/env bash
# Regenerates the demo prompts (8 kHz mono u-law WAV) with espeak-ng and sox.
# The WAVs are committed so the demo runs on machines without either tool.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
gen() { espeak-ng -v en-us -s 150 -w "$tmp" "$2" && sox "$tmp" -r 8000 -c 1 -e u-law -b 8 "$1.wav" norm -3; }
gen welcome "Welcome to Switchboard. Press 1 for a tone. Press 2 for the echo test. Press 3 to hear the digits you type, read back."
gen echo "Echo test. Speak, and you will hear yourself."
gen digits "Type some digits, then press the pound key."
gen you-entered "You entered"
gen invalid "Sorry, that is not a valid choice."
gen no-input "We did not receive any input."
gen goodbye "Goodbye."
for d in 0:zero 1:one 2:two 3:three 4:four 5:five 6:six 7:seven 8:eight 9:nine star:star pound:pound A:A B:B C:C D:D; do
  gen "digit-${d%%:*}" "${d#*:}"
done
