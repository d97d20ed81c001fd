<?php
// Reads php://input in 64 KiB chunks (never the whole body at once).
// Body: {"len":N,"sha256":"HEX"}   Content-Type: application/json
header('Content-Type: application/json');
require __DIR__ . '/lib.php';
[$len, $sha256] = hash_input();
echo json_encode(['len' => $len, 'sha256' => $sha256]);
