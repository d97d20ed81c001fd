<?php
// Reads php://input in 64 KiB chunks (never the whole body at once).
// Body: {"len":N,"sha256":"HEX"}   Content-Type: application/json
header('Content-Type: application/json');
$in = fopen('php://input', 'rb');
$ctx = hash_init('sha256');
$len = 0;
while (($chunk = fread($in, 65536)) !== false && $chunk !== '') {
    $len += strlen($chunk);
    hash_update($ctx, $chunk);
}
fclose($in);
echo json_encode(['len' => $len, 'sha256' => hash_final($ctx)]);
