#!/bin/bash
# Build gce's .rpm: packaging/rpm/build.sh VERSION OUTDIR -> OUTDIR/gce-VERSION-1.x86_64.rpm
# (its path is the last line on stdout).
#
# packaging/build-venv.sh makes the stage (the venv /opt/gce and every file around it, relocated:
# no file names the stage), the glibc check refuses a stage that RHEL 8 could not load,
# license.py names its licenses in SPDX, and rpmbuild packs the stage with
# gce.spec in a private _topdir: nothing is written into the checkout. SOURCE_DATE_EPOCH, when the
# caller does not set it, is the time of the checkout's last commit.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 VERSION OUTDIR" >&2
    exit 2
fi
version=$1
outdir=$2
here=$(cd "$(dirname "$0")" && pwd)
for tool in rpmbuild objdump; do
    if ! command -v "$tool" >/dev/null; then
        echo "error: cannot build the .rpm: $tool is missing" >&2
        echo "hint: apt-get install -y rpm binutils" >&2
        exit 69
    fi
done

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)
fi
export SOURCE_DATE_EPOCH

top=$(mktemp -d "${TMPDIR:-/tmp}/gce-rpm.XXXXXX")
trap 'rm -rf "$top"' EXIT
stage=$top/stage

"$here/../build-venv.sh" "$stage" rpm "$version" >&2
/usr/bin/python3 "$here/check_glibc.py" "$stage" >&2
license=$(/usr/bin/python3 "$here/license.py" "$stage/usr/share/doc/gce/bundled-licenses.txt")
rpmbuild -bb --quiet \
    --define "_topdir $top/rpmbuild" \
    --define "gce_version $version" \
    --define "gce_stage $stage" \
    --define "gce_license $license" \
    "$here/gce.spec" >&2
mkdir -p "$outdir"
built=$(find "$top/rpmbuild/RPMS" -name "gce-$version-*.rpm")
cp "$built" "$outdir/"
echo "$(cd "$outdir" && pwd)/$(basename "$built")"
