<?php
// Body: JSON object
//   {"server": $_SERVER, "get": $_GET, "post": $_POST,
//    "input_len": strlen(file_get_contents('php://input'))}
// Content-Type: application/json. Empty arrays are encoded as {} and invalid
// UTF-8 is replaced by U+FFFD.
header('Content-Type: application/json');
$input = file_get_contents('php://input');
echo json_encode(
    [
        'server' => (object) $_SERVER,
        'get' => (object) $_GET,
        'post' => (object) $_POST,
        'input_len' => strlen($input === false ? '' : $input),
    ],
    JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR
);
