/**
 * JSON as Go's encoding/json writes it, for output that must match the Go tools byte for byte (skopeo's inspect,
 * docker save's manifest.json): HTML-safe escapes of <, >, & and the two JS line separators.
 * indent 0: json.Marshal (compact); 4: json.MarshalIndent(v, "", "    ").
 */
export function goJson(v: unknown, indent = 0): string {
  return JSON.stringify(v, null, indent || undefined)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
