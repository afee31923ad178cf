<?php
// Server mode in PHP: gate the article body on the server (metered readers included).
// $reader is your own reader or cookie id; PAYWALL_URL and PAYWALL_SITE_KEY come from the environment.

function paywall(string $path, array $body): array {
    $ctx = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Authorization: Bearer " . getenv('PAYWALL_SITE_KEY') . "\r\nContent-Type: application/json\r\n",
        'content' => json_encode($body),
        'timeout' => 3,
    ]]);
    return json_decode(file_get_contents(getenv('PAYWALL_URL') . $path, false, $ctx), true);
}

function render_article(string $reader, string $article, array $paragraphs, string $level = 'metered'): string {
    $answer = paywall('/v1/access', ['reader' => $reader, 'article' => $article, 'level' => $level]);
    $shown = $answer['allowed'] ? $paragraphs : array_slice($paragraphs, 0, 1); // the excerpt only
    $html = '<article>' . implode('', array_map(fn($p) => '<p>' . htmlspecialchars($p) . '</p>', $shown)) . '</article>';
    $token = $answer['token'] ?? paywall('/v1/access/token', ['reader' => $reader])['token'];
    return $html . '<script src="' . getenv('PAYWALL_URL') . '/support/widget.js" data-token="'
        . htmlspecialchars($token) . '" async></script>';
}
