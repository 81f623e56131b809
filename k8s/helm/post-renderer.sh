#!/usr/bin/env sh
# Helm post-renderer: adds the selfcheck sidecar (k8s/components/selfcheck-sidecar) to the node
# Agent DaemonSet that the official Datadog chart renders, and passes everything else through.
# Reads the rendered manifests on stdin and writes the result on stdout, as Helm expects.
#
#   Helm 3:  helm upgrade --install datadog datadog/datadog -f values.yaml \
#                --post-renderer ./k8s/helm/post-renderer.sh
#   Helm 4:  helm plugin install ./k8s/helm     (plugin.yaml beside this script), then
#            helm upgrade --install ... --post-renderer selfcheck-sidecar
#
# env: SELFCHECK_IMAGE      the sidecar image, e.g. registry.example.com/selfcheck:0.1.0
#      SELFCHECK_LOGS       true when the chart has datadog.logs.enabled: adds the log mount
#      KUBECTL              kubectl binary with built-in kustomize (default: kubectl)
#      SELFCHECK_COMPONENTS the components directory (default: ../components from here)
set -eu

here=$(cd "$(dirname "$0")" && pwd -P)
components=${SELFCHECK_COMPONENTS:-$here/../components}
for name in selfcheck-sidecar selfcheck-logs; do
    [ -f "$components/$name/kustomization.yaml" ] || {
        echo "post-renderer: no kustomize component $name in $components" >&2
        exit 1
    }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
cat >"$work/rendered.yaml"
# kustomize loads patch files only from inside the kustomization's own tree: copy the components.
cp -R "$components/selfcheck-sidecar" "$components/selfcheck-logs" "$work/"

{
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    echo "  - rendered.yaml"
    echo "components:"
    echo "  - selfcheck-sidecar"
    [ "${SELFCHECK_LOGS:-false}" != true ] || echo "  - selfcheck-logs"
    if [ -n "${SELFCHECK_IMAGE:-}" ]; then
        # name[:tag] or name@digest; a registry port (host:5000/x) is not a tag.
        case $SELFCHECK_IMAGE in
            *@*) name=${SELFCHECK_IMAGE%%@*} pin="digest: ${SELFCHECK_IMAGE#*@}" ;;
            *)
                last=${SELFCHECK_IMAGE##*/}
                case $last in
                    *:*) name=${SELFCHECK_IMAGE%:*} pin="newTag: \"${SELFCHECK_IMAGE##*:}\"" ;;
                    *) name=$SELFCHECK_IMAGE pin="" ;;
                esac
                ;;
        esac
        echo "images:"
        echo "  - name: selfcheck"
        echo "    newName: $name"
        [ -z "$pin" ] || echo "    $pin"
    fi
} >"$work/kustomization.yaml"

# Every read-only cgroups mount also gets recursiveReadOnly: IfPossible (the chart has no value
# for it): on cgroup v1 the controllers are submounts that readOnly alone leaves writable
# (docs/checks/security.md). IfPossible falls back silently where the kubelet, kernel or runtime
# cannot honour it. kubectl kustomize prints each volumeMount's keys sorted, one per line.
"${KUBECTL:-kubectl}" kustomize "$work" >"$work/out.yaml"
awk '
function flush() {
    if (item && ro && !rro) print pad "recursiveReadOnly: IfPossible"
    item = 0
}
item && index($0, pad) != 1 { flush() }
item && index($0, pad) == 1 && substr($0, length(pad) + 1, 1) != " " {
    if ($0 == pad "readOnly: true") ro = 1
    if (index($0, pad "recursiveReadOnly:") == 1) rro = 1
}
{ print }
/^ *- mountPath: \/host\/sys\/fs\/cgroup$/ {
    item = 1; ro = 0; rro = 0
    pad = $0; sub(/- mountPath:.*$/, "", pad); pad = pad "  "
}
END { flush() }
' "$work/out.yaml"
