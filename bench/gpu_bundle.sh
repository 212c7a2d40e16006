#!/usr/bin/env bash
# Packs .gpu/ for an NVIDIA GPU machine without OpenCL packages: ../shared/gpu/bundle.sh (the
# release build, OpenCL loader, CLBlast, cJSON, libpng, Fashion-MNIST, the references, env.sh),
# then every other shared library the binary needs that glibc does not provide (cairo and
# LAPACK bring a dozen: pixman, fontconfig, freetype, X11's client libraries, BLAS, ...), and
# the DejaVu font; then packs .gpu/ into .gpux/gpu.tar.xz (40 MB: .gpu/ itself, 62 MiB, with
# the tracked tree passes the 64 MiB a device run carries). Run from the project's root; then one
# device run with carry [".gpux"]: `tar xJf .gpux/gpu.tar.xz && bash bench/gpu_check.sh`.
# With ICONS11, an icons-11 folder (../shared/data/make_icons.py; 10 MB, 8 MB packed), it goes into
# .gpu/data/icons-11, for issue 22's residual model in gpu_check.sh.
#   bash bench/gpu_bundle.sh [ICONS11]
set -euo pipefail
[ -f meson.build ] || { echo "gpu_bundle.sh: run it from the project's root" >&2; exit 1; }
icons=${1:-}
[ -z "$icons" ] || [ -d "$icons/train" ] ||
    { echo "gpu_bundle.sh: $icons: not an icons-11 folder (no train/ in it)" >&2; exit 1; }
bash ../shared/gpu/bundle.sh
# torch_resvae.py decodes 16-bit PNGs with make_icons.py, from ../data beside its folder.
[ -z "$icons" ] || { cp -r "$icons" .gpu/data/icons-11 && cp ../shared/data/make_icons.py .gpu/data/; }
for lib in $(ldd build-gpu/clvae | awk '$3 ~ /^\// {print $3}'); do
    case "$(basename "$lib")" in
    # glibc's, and the C++ runtime a newer image has newer (the driver may need its version).
    libc.so.*|libm.so.*|libpthread.so.*|libdl.so.*|librt.so.*|ld-linux*|libstdc++.so.*|libgcc_s.so.*) ;;
    # clvae's LAPACK is one dsyev (clvae scatter's PCA): the reference BLAS and LAPACK (libblas3,
    # liblapack3: 8 MB) rather than OpenBLAS (35 MB), which would take .gpu past the 64 MiB a
    # device run carries.
    libopenblas*) ;;
    libblas.so.3|liblapack.so.3)
        ref=/usr/lib/x86_64-linux-gnu/$(basename "$lib" .so.3 | sed 's/^lib//')/$(basename "$lib")
        [ -e "$ref" ] || { echo "gpu_bundle.sh: $ref missing: apt-get install libblas3 liblapack3" >&2; exit 1; }
        cp -L "$ref" .gpu/lib/ ;;
    *) [ -e ".gpu/lib/$(basename "$lib")" ] || cp -L "$lib" .gpu/lib/ ;;
    esac
done
mkdir -p .gpu/fonts && cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf .gpu/fonts/
cat >> .gpu/env.sh <<'ENV'
# cairo finds DejaVu Sans through fontconfig: a configuration naming the carried font.
mkdir -p /tmp/clvae-fonts && cat > /tmp/clvae-fonts/fonts.conf <<CONF
<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd">
<fontconfig><dir>$G/fonts</dir><cachedir>/tmp/clvae-fonts/cache</cachedir></fontconfig>
CONF
export FONTCONFIG_FILE=/tmp/clvae-fonts/fonts.conf
ENV
# The tests' sources travel with the tree; the binaries without their symbols.
rm -rf .gpu/tests
strip --strip-unneeded .gpu/bin/* .gpu/lib/libclvae.so.*
grep -qx '/.gpux/' .git/info/exclude || echo '/.gpux/' >> .git/info/exclude
mkdir -p .gpux && rm -f .gpux/gpu.tar.xz && tar cJf .gpux/gpu.tar.xz .gpu
du -sh .gpu .gpux/gpu.tar.xz
