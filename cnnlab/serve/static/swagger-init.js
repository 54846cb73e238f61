// Starts Swagger UI on this server's own OpenAPI document (loaded from /swagger, never a CDN).
"use strict";
window.addEventListener("load", () => {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
