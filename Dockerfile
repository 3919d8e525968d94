# One image for every Caliber process; the command picks gateway, worker group, or migrate.
FROM node:24-slim
WORKDIR /app
ENV NODE_ENV=production
COPY . .
RUN npm ci --omit=dev --no-audit --no-fund && mkdir -p /app/models /app/data && chown node:node /app/models /app/data
USER node
EXPOSE 8356
CMD ["node", "--import", "tsx", "apps/gateway/src/main.ts"]
