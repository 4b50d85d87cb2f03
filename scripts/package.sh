#!/usr/bin/env bash
# Builds what we hand out for Linux x86_64, VP8 only (without the `h264` feature; see the
# README's "Video codecs and what we distribute"), into target/packages/ or --out DIR:
#   strangers_VERSION_amd64.deb                the desktop app (cargo-deb)
#   strangers-signal-server_VERSION_amd64.deb  the signal server as a hardened systemd service
#   strangers-VERSION-x86_64-linux.tar.gz      the app, portable: binary, desktop entry, icon
#   strangers.AppDir/                          the app as an AppDir (appimagetool makes the AppImage)
#
# Usage: bash scripts/package.sh [--profile release|dev] [--out DIR]
# --profile dev packages the dev build (what the test suite builds anyway; much quicker, not
# for handing out). STRANGERS_REPOSITORY_URL (https://...) is the project's address for the
# AppStream metainfo (homepage, screenshot); by default it comes from git's `origin` remote.
# Needs cargo-deb and dpkg-shlibdeps (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "package: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done
if ! cargo deb --version >/dev/null 2>&1; then
  echo "package: cargo-deb is missing; bash scripts/setup.sh installs it" >&2
  exit 1
fi

metadata=$(cargo metadata --format-version 1 --no-deps)
target_dir=$(printf '%s' "$metadata" | grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
version=$(cargo pkgid -p strangers | sed 's/.*[#@]//')
case "$profile" in
  dev) built="$target_dir/debug" ;;
  *) built="$target_dir/$profile" ;;
esac
out=${out:-$target_dir/packages}
mkdir -p "$out"
out=$(cd "$out" && pwd)

repository=${STRANGERS_REPOSITORY_URL:-}
if [ -z "$repository" ]; then
  origin=$(git remote get-url origin 2>/dev/null || true)
  case "$origin" in
    https://*) repository=${origin%.git} ;;
    git@*:*) host=${origin#git@}; repository="https://${host%%:*}/${host#*:}"; repository=${repository%.git} ;;
  esac
fi
if [ -z "$repository" ]; then
  repository="https://example.org/strangers"
  echo "package: no git origin; the metainfo names $repository (set STRANGERS_REPOSITORY_URL)" >&2
fi

# The default build (both codecs) of target/PROFILE/strangers is put back when we are done, so
# the workspace's binary stays what `cargo build` made. Renaming, not copying: cargo hard-links
# that file to its own copy in deps/, which must not be written through.
app="$built/strangers"
kept="$built/.strangers-before-packaging"
rm -f "$kept"
[ -e "$app" ] && mv "$app" "$kept"
restore() {
  if [ -e "$kept" ]; then
    rm -f "$app"
    mv "$kept" "$app"
  fi
}
trap restore EXIT

echo "package: building $version ($profile, VP8 only)" >&2
cargo build --profile "$profile" -p strangers --no-default-features
cargo build --profile "$profile" -p signal-server

# The metainfo, with this version and the project's address.
mkdir -p "$built/package"
sed -e "s#@REPOSITORY@#$repository#g" -e "s#@VERSION@#$version#g" -e "s#@DATE@#$(date -u +%F)#g" \
  assets/linux/strangers.metainfo.xml >"$built/package/strangers.metainfo.xml"

# Stripped, as Debian packages are (line tables make the release binaries several times larger).
deb_flags=(--no-build --strip --profile "$profile" --deb-version "$version" --output "$out")
cargo deb -p strangers "${deb_flags[@]}" --no-default-features
cargo deb -p signal-server "${deb_flags[@]}"

# The portable archive.
name="strangers-$version-x86_64-linux"
stage=$(mktemp -d)
trap 'rm -rf "$stage"; restore' EXIT
mkdir "$stage/$name"
install -s -m 755 "$app" "$stage/$name/strangers"
install -m 644 assets/linux/strangers.desktop assets/icons/strangers.svg LICENSE-MIT LICENSE-APACHE "$stage/$name/"
install -m 644 assets/linux/PORTABLE.md "$stage/$name/README.md"
tar -C "$stage" --owner=0 --group=0 -czf "$out/$name.tar.gz" "$name"

# The AppDir: what appimagetool turns into an AppImage (the release workflow does that).
appdir="$out/strangers.AppDir"
rm -rf "$appdir"
install -D -s -m 755 "$app" "$appdir/usr/bin/strangers"
install -D -m 755 assets/linux/AppRun "$appdir/AppRun"
install -D -m 644 assets/linux/strangers.desktop "$appdir/usr/share/applications/strangers.desktop"
install -D -m 644 "$built/package/strangers.metainfo.xml" "$appdir/usr/share/metainfo/strangers.appdata.xml"
install -D -m 644 assets/icons/strangers.svg "$appdir/usr/share/icons/hicolor/scalable/apps/strangers.svg"
for size in 32 48 64 128 256 512; do
  install -D -m 644 "assets/icons/strangers-$size.png" "$appdir/usr/share/icons/hicolor/${size}x$size/apps/strangers.png"
done
ln -s usr/share/applications/strangers.desktop "$appdir/strangers.desktop"
ln -s usr/share/icons/hicolor/256x256/apps/strangers.png "$appdir/strangers.png"
ln -s strangers.png "$appdir/.DirIcon"

echo "package: done, in $out:" >&2
ls -l "$out" >&2
