<?php
// Body: JSON object of every $_SERVER key starting with "X_" or "P_":
//   {"NAME": [strlen(value), "sha256-hex-of-value"], ...}   ({} if none),
// keys sorted by name (ksort, byte order).
// Content-Type: application/json.
header('Content-Type: application/json');
$out = [];
foreach ($_SERVER as $name => $value) {
    $name = (string) $name;
    if (strncmp($name, 'X_', 2) === 0 || strncmp($name, 'P_', 2) === 0) {
        $value = (string) $value;
        $out[$name] = [strlen($value), hash('sha256', $value)];
    }
}
ksort($out, SORT_STRING);
echo json_encode((object) $out, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE);
