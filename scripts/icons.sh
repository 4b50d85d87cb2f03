#!/usr/bin/env bash
# Renders the app icon's PNGs (assets/icons/strangers-SIZE.png, the sizes the packages install
# in the hicolor theme) from assets/icons/strangers.svg. Run it after changing the SVG and commit
# the PNGs, so packaging needs no SVG renderer. Needs rsvg-convert (Debian's librsvg2-bin) and
# ImageMagick.
set -euo pipefail
cd "$(dirname "$0")/.."

for size in 32 48 64 128 256 512; do
  rsvg-convert -w "$size" -h "$size" assets/icons/strangers.svg -o "assets/icons/strangers-$size.png"
done
# The Windows icon holds the usual sizes up to 256 (ImageMagick).
convert assets/icons/strangers-32.png assets/icons/strangers-48.png assets/icons/strangers-64.png \
  assets/icons/strangers-128.png assets/icons/strangers-256.png \
  \( assets/icons/strangers-32.png -resize 16x16 \) assets/icons/strangers.ico
