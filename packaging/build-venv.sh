#!/bin/bash
# Build what a gce package installs into STAGEDIR, as it will lie on the target system:
#   STAGEDIR/opt/gce        a private venv on /usr/bin/python3.11 of the locked dependencies and gce
#                           at VERSION, relocated to /opt/gce and byte-compiled reproducibly
#   STAGEDIR/usr/bin/gce    a link to /opt/gce/bin/gce
#   the systemd units, tmpfiles.d, logrotate, the environment file, man pages, completions and
#   /usr/share/doc/gce/bundled-licenses.txt.
# Usage: packaging/build-venv.sh STAGEDIR deb|rpm VERSION
# The tree is read, never written: gce is built from a copy whose __version__ is VERSION.
# SOURCE_DATE_EPOCH (default: the last commit's time) makes two builds of one tree identical.
# GCE_LOCK names another lock file (the tests give it an incomplete one).
set -euo pipefail

die() { printf 'error: %s\nhint: %s\n' "$1" "$2" >&2; exit 1; }

[ $# -eq 3 ] || die "packaging/build-venv.sh takes 3 arguments, not $#" \
    "packaging/build-venv.sh STAGEDIR deb|rpm VERSION"
stage=$(realpath -m "$1"); kind=$2; version=$3
case $kind in
    deb) environment_file=/etc/default/gce ;;
    rpm) environment_file=/etc/sysconfig/gce ;;
    *) die "unknown package kind '$kind'" "packaging/build-venv.sh STAGEDIR deb|rpm VERSION" ;;
esac
# PEP 440 and both package managers accept it; anything else would be read differently by each.
[[ $version =~ ^[0-9]+(\.[0-9]+)*(\.post[0-9]+)?$ ]] || die "cannot build version '$version'" \
    "give a version like 1.2.3 or 1.2.3.post1"

root=$(cd "$(dirname "$0")/.." && pwd)
python=/usr/bin/python3.11  # the package depends on exactly this interpreter (python3.11)
lock=${GCE_LOCK:-$root/packaging/requirements.lock}
build_lock=$root/packaging/build-requirements.lock
venv=$stage/opt/gce
[ -x $python ] || die "$python is missing" "apt-get install -y python3.11 python3.11-venv"
[ -f "$lock" ] || die "no lock file $lock" "make lock"
[ ! -e "$venv" ] || die "$venv exists" "build into an empty STAGEDIR"

export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct)}
# Nothing run from the stage may leave bytecode naming the stage: compileall writes it last.
export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
export LC_ALL=C.UTF-8 TZ=UTC
# pystemd's C: no debug info, which would name the random directory pip builds in (and so change
# the build-id of every build).
export CFLAGS="-g0 -O2"
umask 022

work=$(mktemp -d /tmp/gce-build-venv.XXXXXX)
trap 'rm -rf "$work"' EXIT

# 1. The tree at VERSION: its tracked files, copied (uncommitted edits included, new files not).
mkdir "$work/src"
git -C "$root" ls-files -z -- gce pyproject.toml README.md | (cd "$root" && tar --null -T - -cf -) \
    | tar -C "$work/src" -xf -
sed -i "s/^__version__ = .*/__version__ = \"$version\"/" "$work/src/gce/__init__.py"
grep -qx "__version__ = \"$version\"" "$work/src/gce/__init__.py" \
    || die "cannot set the version in gce/__init__.py" "it must hold a line __version__ = \"...\""

# 2. Wheels: the locked files (hashes checked; pystemd compiled from its sdist against libsystemd)
# and gce's, built by the locked build tools in a throwaway venv, never resolved anew.
# GCE_WHEEL_CACHE (optional; the tests set it) keeps the locked wheels between builds, under the
# hash of everything they are made from: both locks, the interpreter, the machine and libsystemd.
$python -m venv "$work/build"
"$work/build/bin/pip" install -q --require-hashes --no-deps -r "$build_lock"
wheels_key=$({ cat "$lock" "$build_lock"; $python -VV; uname -m; pkg-config --modversion libsystemd 2>&1; } \
    | sha256sum | cut -c1-32)
cached=${GCE_WHEEL_CACHE:+$GCE_WHEEL_CACHE/$wheels_key}
if [ -n "$cached" ] && [ -f "$cached/.complete" ]; then
    mkdir "$work/wheels" && cp "$cached"/*.whl "$work/wheels/"
else
    "$work/build/bin/pip" wheel -q --require-hashes --no-deps --no-build-isolation -w "$work/wheels" -r "$lock" \
        || die "cannot fetch or build the wheels pinned in $lock" "make lock, or apt-get install -y libsystemd-dev pkg-config gcc python3.11-dev (pystemd)"
    if [ -n "$cached" ]; then  # published whole by a rename: a concurrent build finds all or nothing
        mkdir -p "$GCE_WHEEL_CACHE" && part=$(mktemp -d "$GCE_WHEEL_CACHE/.part.XXXXXX")
        cp "$work"/wheels/*.whl "$part/" && touch "$part/.complete"
        mv -T "$part" "$cached" 2>/dev/null || rm -rf "$part"
    fi
fi
"$work/build/bin/pip" wheel -q --no-deps --no-build-isolation -w "$work/gce-wheel" "$work/src" >/dev/null

# 3. The venv, without pip or setuptools (the build venv's pip installs into it): nothing in
# /opt/gce can install or resolve anything later.
mkdir -p "$stage/opt"
$python -m venv --without-pip "$venv"
"$work/build/bin/pip" --python "$venv/bin/python" install -q --no-index --no-deps --no-compile \
    "$work"/wheels/*.whl "$work"/gce-wheel/*.whl
missing=$("$work/build/bin/pip" --python "$venv/bin/python" check 2>&1) \
    || die "$lock lacks a dependency: ${missing//$'\n'/ }" "make lock (then review the diff)"
# pip check knows gce's dependencies, not its systemd extra: enable-on-boot needs pystemd.
compgen -G "$venv/lib/python3.11/site-packages/pystemd-*.dist-info" >/dev/null \
    || die "$lock lacks a dependency: pystemd (gce's systemd extra) has no pin" "make lock (then review the diff)"
rm -f "$venv"/bin/activate* "$venv"/bin/Activate.ps1
rmdir "$venv/include/python3.11" "$venv/include"  # left empty: nothing here builds C against the venv

# What no program loads at run time, a sixth of the venv: the dependencies' own test suites and
# benchmarks, and the C, Cython and header sources some wheels ship beside their compiled modules.
site_packages=$(echo "$venv"/lib/python3.11/site-packages)
find "$site_packages" -mindepth 2 -type d \( -name tests -o -name benchmarks \) -prune -exec rm -rf {} +
find "$site_packages" -type f \( -name '*.c' -o -name '*.h' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' \) -delete
find "$site_packages" -mindepth 1 -type d -empty -delete

# 4. Relocate: the stage path must appear nowhere (scripts' #! lines, pip's records).
find "$venv" -name direct_url.json -delete
find "$venv" -path '*.dist-info/RECORD' -exec sed -i '/direct_url\.json,/d' {} +
grep -rlZ --binary-files=without-match -F "$stage" "$stage" | xargs -0r sed -i "s|$stage/opt/gce|/opt/gce|g"
# The bundled extension modules without their symbol tables (several wheels ship them unstripped;
# pystemd's has no debug info to drop): smaller, and the same bytes on every build.
find "$venv" -name '*.so' -type f -print0 | while IFS= read -r -d '' so; do
    if readelf -S "$so" | grep ' \.symtab' >/dev/null; then strip --strip-unneeded "$so"; fi  # no -q: pipefail
done
# RECORD lists each installed file's hash: those of the scripts just rewritten, and of the
# stripped libraries, are computed again (they named the stage's path before).
"$venv/bin/python" -I -B - "$venv" <<'PY'
import base64, hashlib, pathlib, sys
site = next(pathlib.Path(sys.argv[1]).glob("lib/python3.*/site-packages"))
for record in site.glob("*.dist-info/RECORD"):
    rows = []
    for row in record.read_text().splitlines():
        name, digest, size = row.rsplit(",", 2)
        path = site / name
        if digest and not path.is_file():
            continue  # pruned above: a record names only what is installed
        if digest and path.is_file():
            data = path.read_bytes()
            digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            size = str(len(data))
        rows.append(f"{name},{digest},{size}")
    record.write_text("\n".join(rows) + "\n")
PY
# Every extension module still loads (stripped, and against this system's libraries).
"$venv/bin/python" -I -B - "$venv" <<'PY' || die "a bundled extension module does not load" "the lines above say which"
import importlib, pathlib, sys
site = next(pathlib.Path(sys.argv[1]).glob("lib/python3.*/site-packages"))
for so in sorted(site.rglob("*.so")):
    parts = so.relative_to(site).parts
    if not any(p.endswith(".libs") for p in parts):  # auditwheel's bundled libraries, not modules
        importlib.import_module(".".join([*parts[:-1], parts[-1].split(".")[0]]))
PY

# 5. Bytecode: checked-hash pycs (valid whatever the files' times), named by their /opt/gce paths.
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
"$venv/bin/python" -m compileall -q -j0 -s "$stage" -p / --invalidation-mode checked-hash "$venv/lib" >/dev/null

# 6. What gce reads to know it came from a package.
cat >"$venv/packaged.json" <<EOF
{"kind": "$kind", "version": "$version", "environment_file": "$environment_file", "system_unit_dir": "/usr/lib/systemd/system", "user_unit_dir": "/usr/lib/systemd/user"}
EOF
mkdir -p "$stage/usr/bin"
ln -s /opt/gce/bin/gce "$stage/usr/bin/gce"

# 7. The units, rendered from gce/templates/systemd by the renderer gce enable-on-boot uses.
"$venv/bin/python" -m gce.commands.packaged units "$stage/usr/lib/systemd" --environment-file "$environment_file" \
    || die "cannot render the systemd units" "$venv/bin/python -m gce.commands.packaged units OUTDIR --environment-file $environment_file"

# 8. The files beside the venv, from packaging/common, man/ and packaging/completion.
common=$root/packaging/common
install -D -m 644 "$common/tmpfiles.conf" "$stage/usr/lib/tmpfiles.d/gce.conf"
install -D -m 644 "$common/logrotate" "$stage/etc/logrotate.d/gce"
install -D -m 644 "$common/environment" "$stage$environment_file"
install -d -m 750 "$stage/etc/gce" "$stage/var/log/gce"
install -d -m 755 "$stage/var/lib/gce"
for page in "$root"/man/*.[15]; do
    [ -e "$page" ] || continue
    install -D -m 644 "$page" "$stage/usr/share/man/man${page##*.}/${page##*/}"
done
completion=$root/packaging/completion
zsh_dir=/usr/share/zsh/vendor-completions
[ "$kind" = rpm ] && zsh_dir=/usr/share/zsh/site-functions
install -D -m 644 "$completion/gce.bash" "$stage/usr/share/bash-completion/completions/gce"
install -D -m 644 "$completion/_gce" "$stage$zsh_dir/_gce"
install -D -m 644 "$completion/gce.fish" "$stage/usr/share/fish/vendor_completions.d/gce.fish"

# 9. Each distribution bundled in the venv, its version and license, from its own metadata.
mkdir -p "$stage/usr/share/doc/gce"
"$venv/bin/python" -I -B "$root/packaging/licenses.py" >"$stage/usr/share/doc/gce/bundled-licenses.txt"

# Every file and directory dated SOURCE_DATE_EPOCH: the packers keep times.
find "$stage" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch -h -d "@$SOURCE_DATE_EPOCH"

if leaks=$(grep -rl -F "$stage" "$stage"); then
    die "the stage path is still in: ${leaks//$'\n'/ }" "report it: these files cannot be relocated by text"
fi
