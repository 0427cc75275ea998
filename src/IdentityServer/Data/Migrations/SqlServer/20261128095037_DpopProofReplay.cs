using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace IdentityServer.Data.Migrations.SqlServer
{
    /// <inheritdoc />
    public partial class DpopProofReplay : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "UsedDpopProofs",
                columns: table => new
                {
                    Thumbprint = table.Column<string>(type: "nvarchar(43)", maxLength: 43, nullable: false),
                    JtiHash = table.Column<string>(type: "nvarchar(64)", maxLength: 64, nullable: false),
                    ExpiresAt = table.Column<DateTime>(type: "datetime2", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_UsedDpopProofs", x => new { x.Thumbprint, x.JtiHash });
                });

            migrationBuilder.CreateIndex(
                name: "IX_UsedDpopProofs_ExpiresAt",
                table: "UsedDpopProofs",
                column: "ExpiresAt");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "UsedDpopProofs");
        }
    }
}
