// Starts Swagger UI on the router's merged document. A file of its own, not an inline script,
// so the page's Content-Security-Policy can allow scripts from 'self' only.
"use strict";
window.ui = SwaggerUIBundle({
  // Same origin: "Try it out" calls go to this router, which forwards them like any client's.
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  // No badge from the public validator: the page talks to nothing but this origin.
  validatorUrl: null,
  // Keep a token entered under "Authorize" for the whole tab, across reloads.
  persistAuthorization: true,
  displayRequestDuration: true,
  tryItOutEnabled: false,
  deepLinking: true,
});
