#!/bin/bash
# Build OUTDIR/gce_VERSION_amd64.deb from this tree and print its path on the last line.
# Usage: packaging/deb/build.sh VERSION OUTDIR
# Everything happens in a temporary build tree: the checkout is read, never written. Two builds
# of one tree give the same bytes: every date is SOURCE_DATE_EPOCH (default: the last commit's).
# The Maintainer is $DEBFULLNAME <$DEBEMAIL> when set, else the last commit's author.
set -euo pipefail

die() { printf 'error: %s\nhint: %s\n' "$1" "$2" >&2; exit 1; }

[ $# -eq 2 ] || die "packaging/deb/build.sh takes 2 arguments, not $#" "packaging/deb/build.sh VERSION OUTDIR"
version=$1; outdir=$(realpath -m "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
for tool in dpkg-buildpackage dh fakeroot; do
    command -v $tool >/dev/null || die "$tool is missing" "apt-get install -y debhelper fakeroot"
done

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}
export LC_ALL=C.UTF-8 TZ=UTC
if [ -n "${DEBEMAIL:-}" ]; then
    maintainer="${DEBFULLNAME:-gce maintainers} <$DEBEMAIL>"
else
    maintainer=$(git -C "$root" log -1 --format='%an <%ae>')
fi

work=$(mktemp -d /tmp/gce-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$root/packaging/build-venv.sh" "$work/stage" deb "$version"

tree=$work/gce-$version
mkdir -p "$tree"
cp -r "$root/packaging/deb" "$tree/debian"
rm -f "$tree/debian/build.sh" "$tree/debian/copyright.in"
sed -i "s|@MAINTAINER@|$maintainer|" "$tree/debian/control"
# The copyright names every bundled distribution: the list build-venv.sh took from their metadata.
bundled=$(sed -e '1,/^$/d' -e 's/^/ /' "$work/stage/usr/share/doc/gce/bundled-licenses.txt")
first=$(git -C "$root" log --max-parents=0 --format=%ad --date=format:%Y | tail -n 1)
last=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y)
years=$first; [ "$first" = "$last" ] || years=$first-$last
awk -v bundled="$bundled" '$0 == "@BUNDLED@" { print bundled; next } { print }' \
    "$root/packaging/deb/copyright.in" | sed "s/@YEARS@/$years/" >"$tree/debian/copyright"
cat >"$tree/debian/changelog" <<EOF
gce ($version) unstable; urgency=medium

  * gce $version, built from its source tree with make package.

 -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")
EOF

(cd "$tree" && DEB_BUILD_OPTIONS="noautodbgsym" \
    dpkg-buildpackage -b -us -uc --no-sign -rfakeroot) >"$work/log" 2>&1 \
    || { tail -c 3000 "$work/log" >&2; die "dpkg-buildpackage failed" "the lines above say why"; }
mkdir -p "$outdir"
deb=$outdir/gce_${version}_amd64.deb
mv "$work/gce_${version}_amd64.deb" "$deb"
echo "$deb"
